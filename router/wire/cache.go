package wire

import (
	"hash/maphash"
	"sync/atomic"
)

// countCache remembers token counts of recent texts, so the parts of a
// request that recur - system prompts, tool definitions, and above all the
// history a chat resends with every turn - are tokenized once. It is a
// direct-mapped table of single words, read and written with one atomic
// operation each: no locks, no allocation, bounded memory. A slot packs the
// high 44 bits of the text's hash with its count (texts above 2^20 tokens
// are never cached); a collision therefore needs two texts whose 64-bit
// seeded hashes agree on 58 bits, and costs a wrong estimate, nothing worse.
type countCache struct {
	seed    maphash.Seed // for texts
	rawSeed maphash.Seed // for texts known by their escaped JSON form
	slots   [cacheSlots]atomic.Uint64
}

const (
	cacheSlots = 1 << 14 // 128 KiB
	countBits  = 20
	countMask  = 1<<countBits - 1
	// cacheMin is the shortest text worth caching: shorter ones tokenize in
	// about the time a lookup takes, and would only evict longer ones.
	cacheMin = 256
)

func newCountCache() *countCache {
	return &countCache{seed: maphash.MakeSeed(), rawSeed: maphash.MakeSeed()}
}

// hash is the key of a text.
func (c *countCache) hash(s string) uint64 { return maphash.String(c.seed, s) }

// hashRaw is the key of a text by its JSON-escaped form, so that a repeated
// text is found without unescaping it. The separate seed keeps the two kinds
// of key apart.
func (c *countCache) hashRaw(raw string) uint64 { return maphash.String(c.rawSeed, raw) }

func (c *countCache) lookup(h uint64) (int, bool) {
	v := c.slots[h%cacheSlots].Load()
	if v != 0 && v>>countBits == h>>countBits {
		return int(v & countMask), true
	}
	return 0, false
}

func (c *countCache) store(h uint64, count int) {
	if count <= 0 || count > countMask {
		return
	}
	c.slots[h%cacheSlots].Store(h>>countBits<<countBits | uint64(count))
}
