package router

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// This file tests and measures the response cache alone, without HTTP:
// close racing its uses, the per-use cost of guarding ristretto against
// Close, and the store path with its eviction callbacks.
// BenchmarkCacheHit and BenchmarkUpstreamCall (cache_test.go) measure
// whole requests.

// TestRespCacheCloseRace closes caches while goroutines get, set (with
// evictions: 20 KB entries in 256 KiB) and read the cost. Nothing panics
// or blocks, every use after close sees a closed cache, the entry count
// ends at 0, and TestMain's goleak finds none of ristretto's goroutines.
func TestRespCacheCloseRace(t *testing.T) {
	for round := range 10 {
		rc, err := newRespCache(256 << 10)
		if err != nil {
			t.Fatal(err)
		}
		e := benchEntry(20 << 10)
		var ops atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					key := strconv.Itoa(g) + "/" + strconv.Itoa(i%64)
					switch i % 3 {
					case 0:
						rc.set(key, e, time.Minute)
					case 1:
						rc.get(key)
					default:
						rc.used()
					}
					ops.Add(1)
				}
			}()
		}
		// Close at a different point of the traffic each round.
		waitFor(t, 5*time.Second, "uses before close", func() bool { return ops.Load() >= int64(50*round) })
		var closers sync.WaitGroup
		for range 2 { // close is idempotent, even when it races itself
			closers.Add(1)
			go func() { defer closers.Done(); rc.close() }()
		}
		closers.Wait()
		after := ops.Load()
		waitFor(t, 5*time.Second, "uses after close", func() bool { return ops.Load() >= after+300 })
		close(stop)
		wg.Wait()
		if _, ok := rc.get("0/0"); ok || rc.used() != 0 || rc.stats.entries.Load() != 0 || rc.acquire() != nil {
			t.Fatalf("round %d: closed cache still answers: used %d entries %d", round, rc.used(), rc.stats.entries.Load())
		}
		rc.set("late", e, time.Minute)
		if rc.users.Load() != 0 {
			t.Fatalf("round %d: %d uses outstanding", round, rc.users.Load())
		}
	}
}

// TestRespCacheCloseWaitsForUses holds a use across close: close swaps
// the cache out at once (new uses see it closed) but closes ristretto only
// once the use that got the old pointer has ended.
func TestRespCacheCloseWaitsForUses(t *testing.T) {
	rc, err := newRespCache(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	c := rc.acquire() // a request between loading the pointer and using it
	closed := make(chan struct{})
	go func() { defer close(closed); rc.close() }()
	waitFor(t, 5*time.Second, "close to swap the cache out", rc.closing.Load)
	if rc.acquire() != nil {
		t.Fatal("a use that starts after close got the cache")
	}
	// The held use still works: ristretto is not closed under it. (The
	// entry is counted as set counts it.)
	rc.stats.entries.Add(1)
	if !c.SetWithTTL("k", benchEntry(10), 100, time.Minute) {
		t.Fatal("set refused: ristretto was closed under a use")
	}
	c.Wait()
	if _, ok := c.Get("k"); !ok {
		t.Fatal("get missed: ristretto was closed under a use")
	}
	select {
	case <-closed:
		t.Fatal("close returned while a use was running")
	default:
	}
	rc.release()
	<-closed
	if rc.used() != 0 || rc.stats.entries.Load() != 0 {
		t.Fatalf("closed cache: used %d, entries %d", rc.used(), rc.stats.entries.Load())
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		<-tick.C
	}
}

func benchEntry(size int) *cacheEntry {
	return &cacheEntry{body: []byte(strings.Repeat("x", size)), streamable: true, content: "hello", finish: "stop", model: "m"}
}

// BenchmarkRespCacheGet reads 1024 stored keys from every core at once.
func BenchmarkRespCacheGet(b *testing.B) {
	rc, err := newRespCache(64 << 20)
	if err != nil {
		b.Fatal(err)
	}
	defer rc.close()
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "key-" + strconv.Itoa(i)
		rc.set(keys[i], benchEntry(1024), time.Hour)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, ok := rc.get(keys[i&1023]); !ok && i < 1024 {
				// ristretto may refuse a few of the first sets; a miss is
				// measured like a hit.
				_ = ok
			}
			i++
		}
	})
}

// BenchmarkRespCacheSetEvict stores distinct 20 KB entries in a 1 MiB
// cache, so that once full every store evicts (or is refused).
func BenchmarkRespCacheSetEvict(b *testing.B) {
	rc, err := newRespCache(1 << 20)
	if err != nil {
		b.Fatal(err)
	}
	defer rc.close()
	e := benchEntry(20 << 10)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		rc.set("key-"+strconv.Itoa(i), e, time.Hour)
		i++
	}
}
