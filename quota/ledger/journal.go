package ledger

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// The journal is a sequence of frames:
//
//	length  uint32 LE   bytes of payload
//	crc     uint32 LE   CRC-32C of kind and payload
//	kind    byte
//	payload
//
// Kinds (numbers are part of the file format; retired ones stay reserved):
const (
	// frameRecord is one Usage as the request path reported it (its time
	// resolved).
	frameRecord byte = 1
	// frameBatch is a batch about to be sent: its ID and the exact body.
	// Every record and rows frame before it is in it.
	frameBatch byte = 2
	// frameApplied marks a batch as applied (or found a duplicate).
	frameApplied byte = 3
	// frameRows is pending rows written by a rotation: the aggregate of
	// records not yet in a batch (JSON []Row).
	frameRows byte = 4
)

const (
	frameHeader = 9
	// maxFramePayload bounds a frame's payload; a longer length is taken
	// for a torn or damaged frame. A batch body is at most about MaxRows
	// rows of JSON (300 KB at the default).
	maxFramePayload = 64 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// beginFrame reserves a frame header at the end of dst; endFrame fills it
// once the payload has been appended after it.
func beginFrame(dst []byte) ([]byte, int) {
	start := len(dst)
	return append(dst, 0, 0, 0, 0, 0, 0, 0, 0, 0), start
}

func endFrame(dst []byte, start int, kind byte) []byte {
	dst[start+8] = kind
	binary.LittleEndian.PutUint32(dst[start:], uint32(len(dst)-start-frameHeader))
	binary.LittleEndian.PutUint32(dst[start+4:], crc32.Checksum(dst[start+8:], crcTable))
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// appendRecordFrame appends u as a record frame.
func appendRecordFrame(dst []byte, u *Usage) []byte {
	dst, start := beginFrame(dst)
	dst = binary.AppendVarint(dst, u.Time.UnixNano())
	for _, s := range [...]string{u.Tenant, u.KeyID, u.Model, u.Deployment, u.Region, u.Class} {
		dst = appendString(dst, s)
	}
	var flags byte
	if u.Cached {
		flags = 1
	}
	dst = append(dst, flags)
	dst = binary.AppendVarint(dst, int64(u.Status))
	dst = binary.AppendVarint(dst, u.PromptTokens)
	dst = binary.AppendVarint(dst, u.CompletionTokens)
	return endFrame(dst, start, frameRecord)
}

func appendID(dst []byte, id BatchID) []byte {
	dst = binary.LittleEndian.AppendUint64(dst, id.Incarnation)
	dst = binary.LittleEndian.AppendUint64(dst, id.Seq)
	return appendString(dst, id.Node)
}

// appendBatchFrame appends a batch frame: its ID, then the encoded body.
func appendBatchFrame(dst []byte, id BatchID, body []byte) []byte {
	dst, start := beginFrame(dst)
	dst = appendID(dst, id)
	dst = append(dst, body...)
	return endFrame(dst, start, frameBatch)
}

func appendAppliedFrame(dst []byte, id BatchID) []byte {
	dst, start := beginFrame(dst)
	dst = appendID(dst, id)
	return endFrame(dst, start, frameApplied)
}

func appendRowsFrame(dst []byte, rows []Row) ([]byte, error) {
	body, err := json.Marshal(rows)
	if err != nil {
		return dst, fmt.Errorf("encode pending rows: %w", err)
	}
	dst, start := beginFrame(dst)
	dst = append(dst, body...)
	return endFrame(dst, start, frameRows), nil
}

// errFrame is a payload that does not decode although its CRC matched.
var errFrame = errors.New("malformed journal frame")

// payloadReader decodes the fields of one payload.
type payloadReader struct {
	b   []byte
	err error
	// intern, when set, shares the strings of a replay: labels repeat,
	// and a lookup by string(bytes) does not allocate.
	intern map[string]string
}

func (r *payloadReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errFrame
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *payloadReader) u64() uint64 {
	if len(r.b) < 8 {
		r.err = errFrame
		return 0
	}
	v := binary.LittleEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *payloadReader) str() string {
	l, n := binary.Uvarint(r.b)
	if n <= 0 || l > uint64(len(r.b)-n) {
		r.err = errFrame
		return ""
	}
	raw := r.b[n : n+int(l)]
	r.b = r.b[n+int(l):]
	if r.intern == nil {
		return string(raw)
	}
	if s, ok := r.intern[string(raw)]; ok {
		return s
	}
	if len(r.intern) >= maxInterned {
		return string(raw)
	}
	s := string(raw)
	r.intern[s] = s
	return s
}

func (r *payloadReader) byte1() byte {
	if len(r.b) < 1 {
		r.err = errFrame
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

// maxInterned bounds the strings a replay shares.
const maxInterned = 1 << 16

func decodeRecord(p []byte, intern map[string]string) (Usage, error) {
	r := payloadReader{b: p, intern: intern}
	var u Usage
	u.Time = time.Unix(0, r.varint())
	u.Tenant, u.KeyID, u.Model = r.str(), r.str(), r.str()
	u.Deployment, u.Region, u.Class = r.str(), r.str(), r.str()
	u.Cached = r.byte1()&1 != 0
	u.Status = int(r.varint())
	u.PromptTokens = r.varint()
	u.CompletionTokens = r.varint()
	if r.err == nil && len(r.b) != 0 {
		r.err = errFrame
	}
	return u, r.err
}

func decodeID(r *payloadReader) BatchID {
	var id BatchID
	id.Incarnation = r.u64()
	id.Seq = r.u64()
	id.Node = r.str()
	return id
}

// journalBatch is a batch found in the journal without an applied frame.
type journalBatch struct {
	id   BatchID
	body []byte
}

// replay is what a journal holds.
type replay struct {
	// batches were journaled and not marked applied, in journal order.
	batches []journalBatch
	// records and rows were journaled after the last batch frame: they
	// are in no batch yet.
	records []Usage
	rows    []Row
	// frames is the number of whole frames read; valid the bytes they
	// span. Anything after valid is a torn or damaged tail.
	frames int
	valid  int
}

// readJournal decodes data up to the first frame that is short, fails its
// CRC or does not decode. It never fails: a bad frame ends the journal.
func readJournal(data []byte) replay {
	var (
		out     replay
		batches []journalBatch
		seen    = map[BatchID]int{} // batch ID -> index in batches
		applied = map[BatchID]bool{}
		intern  = map[string]string{}
	)
	off := 0
	for len(data)-off >= frameHeader {
		l := binary.LittleEndian.Uint32(data[off:])
		if l > maxFramePayload || uint64(l) > uint64(len(data)-off-frameHeader) {
			break
		}
		end := off + frameHeader + int(l)
		if crc32.Checksum(data[off+8:end], crcTable) != binary.LittleEndian.Uint32(data[off+4:]) {
			break
		}
		kind, p := data[off+8], data[off+frameHeader:end]
		ok := true
		switch kind {
		case frameRecord:
			u, err := decodeRecord(p, intern)
			if ok = err == nil; ok {
				out.records = append(out.records, u)
			}
		case frameBatch:
			r := payloadReader{b: p}
			id := decodeID(&r)
			if ok = r.err == nil; ok {
				if _, dup := seen[id]; !dup {
					seen[id] = len(batches)
					batches = append(batches, journalBatch{id: id, body: append([]byte(nil), r.b...)})
				}
				out.records, out.rows = nil, nil // they are in this batch
			}
		case frameApplied:
			r := payloadReader{b: p}
			id := decodeID(&r)
			if ok = r.err == nil && len(r.b) == 0; ok {
				applied[id] = true
			}
		case frameRows:
			var rows []Row
			if ok = json.Unmarshal(p, &rows) == nil; ok {
				out.rows = append(out.rows, rows...)
			}
		default:
			ok = false
		}
		if !ok {
			break
		}
		off = end
		out.frames++
	}
	out.valid = off
	for _, b := range batches {
		if !applied[b.id] {
			out.batches = append(out.batches, b)
		}
	}
	return out
}

// journal is the write-ahead file of a Batcher. Only the Batcher's Run
// goroutine uses it (NewBatcher before Run starts).
type journal struct {
	path string
	sync bool
	f    *os.File
	size int64
	buf  []byte // reused for every write
}

// openJournal reads the journal at path (a missing file is empty).
func openJournal(path string, sync bool) (*journal, replay, error) {
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, replay{}, fmt.Errorf("read usage journal: %w", err)
	}
	return &journal{path: path, sync: sync}, readJournal(data), nil
}

// write appends b with one write call.
func (j *journal) write(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	n, err := j.f.Write(b)
	j.size += int64(n)
	if err == nil && j.sync {
		err = j.f.Sync()
	}
	if err != nil {
		return fmt.Errorf("write usage journal: %w", err)
	}
	return nil
}

// truncate empties the journal: every batch is applied, nothing pending.
func (j *journal) truncate() error {
	if err := j.f.Truncate(0); err != nil {
		return fmt.Errorf("truncate usage journal: %w", err)
	}
	j.size = 0
	if j.sync {
		if err := j.f.Sync(); err != nil {
			return fmt.Errorf("sync usage journal: %w", err)
		}
	}
	return nil
}

// rotate replaces the journal with content: written to a new file, then
// renamed over the old one, so a crash at any point leaves either the old
// journal or the new one, both whole.
func (j *journal) rotate(content []byte) error {
	tmp := j.path + ".new"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("rotate usage journal: %w", err)
	}
	fail := func(err error) error {
		_ = f.Close()
		_ = os.Remove(tmp)
		return fmt.Errorf("rotate usage journal: %w", err)
	}
	if _, err := f.Write(content); err != nil {
		return fail(err)
	}
	if j.sync {
		if err := f.Sync(); err != nil {
			return fail(err)
		}
	}
	if err := os.Rename(tmp, j.path); err != nil {
		return fail(err)
	}
	if j.sync {
		if d, err := os.Open(filepath.Dir(j.path)); err == nil {
			_ = d.Sync()
			_ = d.Close()
		}
	}
	j.close()
	j.f, j.size = f, int64(len(content))
	return nil
}

func (j *journal) close() {
	if j.f != nil {
		_ = j.f.Close()
		j.f = nil
	}
}

// replayHorizon is how old a journaled batch may be and still be re-sent.
// The section forgets an incarnation idle for Retention; a batch of a
// forgotten incarnation would count again. A batch whose newest row is
// older than Retention less a day (for clock skew between nodes) is
// therefore dropped on replay and counted in
// sluice_ledger_journal_stale_batches_total, never re-sent.
const replayHorizon = Retention - 24*time.Hour

// journalRetry is how long the batcher runs without its journal after a
// write failed before it tries to rewrite it; failures are logged at most
// this often.
const journalRetry = time.Minute

type journalState struct {
	failedAt time.Time // last failure
	loggedAt time.Time // last failure logged
	rotated  int64     // size of the last rotation's content
}

type journalMetrics struct {
	bytes           atomic.Int64
	replayedRecords *metrics.Counter
	replayedBatches *metrics.Counter
	stale           *metrics.Counter
	errors          *metrics.Counter
}

func (m *journalMetrics) init(s *metrics.Set) {
	s.GetOrCreateGauge("sluice_ledger_journal_bytes", func() float64 { return float64(m.bytes.Load()) })
	m.replayedRecords = s.GetOrCreateCounter("sluice_ledger_journal_replayed_records_total")
	m.replayedBatches = s.GetOrCreateCounter("sluice_ledger_journal_replayed_batches_total")
	m.stale = s.GetOrCreateCounter("sluice_ledger_journal_stale_batches_total")
	m.errors = s.GetOrCreateCounter("sluice_ledger_journal_errors_total")
}

// openJournal reads the journal, restores what it holds (unapplied batches
// to the queue, records in no batch to the pending rows of this
// incarnation) and rewrites it with just that.
func (b *Batcher) openJournal() error {
	j, rep, err := openJournal(b.cfg.JournalPath, b.cfg.JournalSync)
	if err != nil {
		return err
	}
	b.j = j
	b.replay(rep)
	b.rotateJournal()
	return nil
}

func (b *Batcher) replay(rep replay) {
	horizon := time.Now().Add(-replayHorizon).Unix()
	for _, jb := range rep.batches {
		batch, err := decodeBatch(jb.body)
		if err != nil || batch.ID != jb.id {
			b.jMetrics.errors.Inc()
			b.cfg.Logger.Error("journaled usage batch does not decode; dropped", "node", jb.id.Node, "inc", jb.id.Incarnation, "seq", jb.id.Seq, "err", err)
			continue
		}
		newest := int64(math.MinInt64)
		for i := range batch.Rows {
			newest = max(newest, batch.Rows[i].Bucket)
		}
		if len(batch.Rows) > 0 && newest < horizon {
			b.jMetrics.stale.Inc()
			b.cfg.Logger.Warn("journaled usage batch older than the replay horizon; dropped",
				"node", jb.id.Node, "inc", jb.id.Incarnation, "seq", jb.id.Seq, "newest", time.Unix(newest, 0).UTC())
			continue
		}
		b.queue = append(b.queue, queued{id: jb.id, body: jb.body, rows: len(batch.Rows)})
		b.pendingRows.Add(int64(len(batch.Rows)))
		b.jMetrics.replayedBatches.Inc()
	}
	for i := range rep.records {
		b.add(&rep.records[i])
	}
	for _, r := range rep.rows {
		b.addRow(rowKey{bucket: r.Bucket, Labels: r.Labels}, r.Counts)
	}
	b.jMetrics.replayedRecords.Add(len(rep.records))
	if rep.frames > 0 {
		b.cfg.Logger.Info("usage journal replayed", "frames", rep.frames, "batches", len(b.queue),
			"records", len(rep.records), "rows", len(rep.rows), "pending_rows", len(b.pending))
	}
}

// journalUp reports whether the journal is configured and working.
func (b *Batcher) journalUp() bool { return b.j != nil && b.j.f != nil }

// journalWrite appends buf (whole frames) with one write.
func (b *Batcher) journalWrite(buf []byte) {
	if err := b.j.write(buf); err != nil {
		b.journalFailed(err)
		return
	}
	b.jMetrics.bytes.Store(b.j.size)
}

// journalLimit is the size at which the journal is rewritten: at least
// JournalMaxBytes, and twice what the last rewrite wrote, so rewrites stay
// rare when what is unapplied is large (a long outage).
func (b *Batcher) journalLimit() int64 {
	return max(b.cfg.JournalMaxBytes, 2*b.jState.rotated)
}

// journalBound rewrites the journal once it reached its limit.
func (b *Batcher) journalBound() {
	if b.journalUp() && b.j.size >= b.journalLimit() {
		b.rotateJournal()
	}
}

// journalBatch journals a batch before it is sent. Right after a cut
// nothing is pending, so a rewrite here is as small as the journal gets.
func (b *Batcher) journalBatch(id BatchID, body []byte) {
	if !b.journalUp() {
		return
	}
	if b.j.size >= b.journalLimit() {
		b.rotateJournal() // writes the queue, this batch included
		return
	}
	b.j.buf = appendBatchFrame(b.j.buf[:0], id, body)
	b.journalWrite(b.j.buf)
}

// journalApplied marks a batch applied; when nothing is left at all the
// journal is emptied instead.
func (b *Batcher) journalApplied(id BatchID) {
	if !b.journalUp() {
		return
	}
	if len(b.queue) == 0 && len(b.pending) == 0 {
		if err := b.j.truncate(); err != nil {
			b.journalFailed(err)
			return
		}
		b.jMetrics.bytes.Store(0)
		return
	}
	b.j.buf = appendAppliedFrame(b.j.buf[:0], id)
	b.journalWrite(b.j.buf)
}

// rotateJournal replaces the journal with what is unapplied now: a batch
// frame per queued batch and one rows frame with the pending rows.
func (b *Batcher) rotateJournal() {
	buf := b.j.buf[:0]
	for _, q := range b.queue {
		buf = appendBatchFrame(buf, q.id, q.body)
	}
	if len(b.pending) > 0 {
		rows := make([]Row, 0, len(b.pending))
		for k, c := range b.pending {
			rows = append(rows, Row{Bucket: k.bucket, Labels: k.Labels, Counts: c})
		}
		var err error
		if buf, err = appendRowsFrame(buf, rows); err != nil {
			b.journalFailed(err)
			return
		}
	}
	b.j.buf = buf
	if err := b.j.rotate(buf); err != nil {
		b.journalFailed(err)
		return
	}
	b.jState.rotated = int64(len(buf))
	b.jMetrics.bytes.Store(b.j.size)
}

// journalFailed counts a journal error and runs on without the journal
// until reviveJournal rewrites it. It logs at most once per journalRetry.
func (b *Batcher) journalFailed(err error) {
	b.jMetrics.errors.Inc()
	now := time.Now()
	b.jState.failedAt = now
	if now.Sub(b.jState.loggedAt) >= journalRetry {
		b.jState.loggedAt = now
		b.cfg.Logger.Error("usage journal failed; running without it until it can be rewritten", "retry_in", journalRetry, "err", err)
	}
	b.j.close()
}

// reviveJournal rewrites a failed journal once journalRetry has passed.
func (b *Batcher) reviveJournal() {
	if b.j == nil || b.j.f != nil || time.Since(b.jState.failedAt) < journalRetry {
		return
	}
	b.rotateJournal()
	if b.journalUp() {
		b.cfg.Logger.Info("usage journal resumed")
	}
}

func (b *Batcher) closeJournal() {
	if b.j != nil {
		b.j.close()
	}
}

// Crash points for tests (export_test.go sets Batcher.crash): Run stops
// there as if the process had been killed.
const (
	crashBeforeBatchFrame = "before-batch-frame"
	crashAfterBatchFrame  = "after-batch-frame"
	crashAfterApply       = "after-apply"
)

// errCrashed is what Run returns after a test crash.
var errCrashed = errors.New("ledger: crashed for a test")

type crashPanic struct{}

func (b *Batcher) maybeCrash(point string) {
	if b.crash != nil && b.crash(point) {
		panic(crashPanic{})
	}
}

// recoverCrash ends Run at a test crash: no final flush, only the attempt
// under way is waited for (its goroutine must end) and its result dropped.
func (b *Batcher) recoverCrash(err *error) {
	r := recover()
	if r == nil {
		return
	}
	if _, ok := r.(crashPanic); !ok {
		panic(r)
	}
	if b.sending {
		<-b.results
	}
	*err = errCrashed
}
