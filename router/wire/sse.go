package wire

import (
	"bytes"
	"io"
	"sync"
)

// DefaultMaxEvent is the largest event NewEventReader accepts. Chat chunks
// are a few hundred bytes; 4 MiB leaves room for a large tool-call delta or
// an error body without letting a broken upstream grow the buffer forever.
const DefaultMaxEvent = 4 << 20

// EventReader reads Server-Sent Events from an upstream response body and
// returns the data of each: its data: lines, joined with "\n" when there
// are several. Comments and the other fields (event:, id:, retry:) are
// skipped. Lines may end in \n, \r\n or \r, reads may split events
// anywhere, and a last event that the stream ends without a blank line is
// still returned. An event longer than the limit is an error
// (ErrEventTooLarge), as is a stream that stops mid-event with a read error.
//
// The usual single-line event is returned as a slice of the reader's
// buffer, without copying: it is valid until the next call to Next.
type EventReader struct {
	r   io.Reader
	buf []byte
	// buf[start:end] is unconsumed; the current event begins at start and
	// lines are scanned from scan.
	start, scan, end int
	max              int
	err              error // sticky: from the reader, or ErrEventTooLarge
	noBOM            bool  // the first line has been seen
	empty            int   // consecutive reads returning nothing

	nData            int    // data lines in the current event
	dataOff, dataEnd int    // the first data line's value, relative to start
	joined           []byte // the data of an event with several data lines
}

// NewEventReader returns an EventReader with the DefaultMaxEvent limit.
func NewEventReader(r io.Reader) *EventReader { return NewEventReaderSize(r, DefaultMaxEvent) }

// NewEventReaderSize returns an EventReader that rejects events longer than
// max bytes (DefaultMaxEvent if max is not positive).
func NewEventReaderSize(r io.Reader, max int) *EventReader {
	if max <= 0 {
		max = DefaultMaxEvent
	}
	return &EventReader{r: r, max: max, buf: make([]byte, min(4096, max+1))}
}

// Next returns the data of the next event, or io.EOF at the clean end of the
// stream. The data is valid until the next call.
func (r *EventReader) Next() ([]byte, error) {
	r.start = r.scan // the previous event is consumed
	r.nData = 0
	for {
		for {
			ls, le, next, ok := r.line()
			if !ok {
				break
			}
			r.scan = next
			if ls == le {
				if r.nData > 0 {
					return r.data(), nil
				}
				r.start = r.scan // an event without data dispatches nothing
				continue
			}
			r.field(ls, le)
		}
		if r.err != nil {
			return r.finish()
		}
		r.fill()
	}
}

// Buffered reports whether the input already read holds another complete
// event with data, so that the next call to Next returns it without
// waiting for input. A relay flushes only when it is false: chunks that
// arrived together leave together, and none waits for the network. It
// errs toward false (an event in an unusual form, a lone CR line break
// say, is not recognised), which only costs an early flush.
func (r *EventReader) Buffered() bool {
	if r.err != nil {
		return false
	}
	rest := r.buf[r.scan:r.end]
	i := bytes.Index(rest, lfLF)
	if j := bytes.Index(rest, crlfCRLF); j >= 0 && (i < 0 || j < i) {
		i = j
	}
	if i < 0 {
		return false
	}
	// A line that starts after a line feed is a real line start; one
	// that is the data field ("data" alone or "data:...") makes the event
	// dispatch. Lines split by a lone CR are not looked into.
	for ev := rest[:i]; len(ev) > 0; {
		line := ev
		if j := bytes.IndexByte(ev, '\n'); j >= 0 {
			line, ev = ev[:j], ev[j+1:]
		} else {
			ev = nil
		}
		line = bytes.TrimSuffix(line, cr)
		if bytes.Equal(line, dataName) || bytes.HasPrefix(line, dataColon) {
			return true
		}
	}
	return false
}

var (
	lfLF      = []byte("\n\n")
	crlfCRLF  = []byte("\r\n\r\n")
	cr        = []byte("\r")
	dataName  = []byte("data")
	dataColon = []byte("data:")
)

// finish handles the end of input: a last line without line break, and a
// last event without blank line, are taken only at a clean end.
func (r *EventReader) finish() ([]byte, error) {
	if r.err != io.EOF {
		return nil, r.err
	}
	if r.scan < r.end {
		ls, le := r.scan, r.end
		r.scan = r.end
		if !r.noBOM {
			r.noBOM = true
			if bytes.HasPrefix(r.buf[ls:le], bom) {
				ls += len(bom)
			}
		}
		if ls < le {
			r.field(ls, le)
		}
	}
	if r.nData > 0 {
		return r.data(), nil
	}
	return nil, io.EOF
}

var bom = []byte("\xef\xbb\xbf")

// line finds the complete line at scan: buf[ls:le] without its line break,
// and next, where the following line starts. ok is false when more input is
// needed to find its end.
func (r *EventReader) line() (ls, le, next int, ok bool) {
	seg := r.buf[r.scan:r.end]
	nl := bytes.IndexByte(seg, '\n')
	look := seg
	if nl >= 0 {
		look = seg[:nl]
	}
	if cr := bytes.IndexByte(look, '\r'); cr >= 0 {
		switch {
		case cr+1 < len(seg):
			next = r.scan + cr + 1
			if seg[cr+1] == '\n' {
				next++
			}
		case r.err != nil: // a final \r
			next = r.scan + cr + 1
		default: // \r at the end of the buffer: a \n may follow
			return 0, 0, 0, false
		}
		nl = cr
	} else if nl >= 0 {
		next = r.scan + nl + 1
	} else {
		return 0, 0, 0, false
	}
	ls, le = r.scan, r.scan+nl
	if !r.noBOM {
		r.noBOM = true
		if bytes.HasPrefix(r.buf[ls:le], bom) {
			ls += len(bom)
		}
	}
	return ls, le, next, true
}

// field handles the non-empty line buf[ls:le] of the current event.
func (r *EventReader) field(ls, le int) {
	line := r.buf[ls:le]
	if line[0] == ':' { // comment
		if r.nData == 0 {
			r.start = r.scan
		}
		return
	}
	name, vs := line, le // the value starts at vs
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		name, vs = line[:i], ls+i+1
		if vs < le && r.buf[vs] == ' ' {
			vs++
		}
	}
	if string(name) != "data" {
		if r.nData == 0 {
			r.start = r.scan // nothing to keep before the first data line
		}
		return
	}
	switch r.nData {
	case 0:
		r.dataOff, r.dataEnd = vs-r.start, le-r.start
	case 1:
		r.joined = append(r.joined[:0], r.buf[r.start+r.dataOff:r.start+r.dataEnd]...)
		fallthrough
	default:
		r.joined = append(r.joined, '\n')
		r.joined = append(r.joined, r.buf[vs:le]...)
	}
	r.nData++
}

func (r *EventReader) data() []byte {
	if r.nData == 1 {
		return r.buf[r.start+r.dataOff : r.start+r.dataEnd : r.start+r.dataEnd]
	}
	return r.joined
}

// fill reads more input, first making room: it drops consumed bytes and
// grows the buffer up to the event limit.
func (r *EventReader) fill() {
	if r.end-r.start > r.max {
		r.err = ErrEventTooLarge
		return
	}
	if r.end == len(r.buf) {
		if r.start > 0 {
			n := copy(r.buf, r.buf[r.start:r.end])
			r.scan -= r.start
			r.end, r.start = n, 0
		}
		if r.end == len(r.buf) {
			grown := make([]byte, min(2*len(r.buf), r.max+1))
			copy(grown, r.buf[:r.end])
			r.buf = grown
		}
	}
	n, err := r.r.Read(r.buf[r.end:])
	r.end += n
	switch {
	case err != nil:
		r.err = err
	case n > 0:
		r.empty = 0
	default:
		if r.empty++; r.empty >= 100 {
			r.err = io.ErrNoProgress
		}
	}
}

// IsDone reports whether data is the [DONE] sentinel that ends OpenAI streams.
func IsDone(data []byte) bool {
	return string(bytes.TrimSpace(data)) == "[DONE]"
}

var eventBufs = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// WriteEvent writes data to w as one event, "data: <data>\n\n", in a single
// Write. Line breaks inside data start further data: lines, so the client
// reads back the same data.
func WriteEvent(w io.Writer, data []byte) error {
	bp := eventBufs.Get().(*[]byte)
	b := AppendEvent((*bp)[:0], data)
	_, err := w.Write(b)
	if cap(b) <= 64<<10 { // do not pin rare huge buffers
		*bp = b[:0]
		eventBufs.Put(bp)
	}
	return err
}

// AppendEvent appends data framed as one event to dst.
func AppendEvent(dst, data []byte) []byte {
	dst = append(dst, "data: "...)
	for {
		i := bytes.IndexByte(data, '\n')
		look := data
		if i >= 0 {
			look = data[:i]
		}
		if cr := bytes.IndexByte(look, '\r'); cr >= 0 {
			i = cr
		}
		if i < 0 {
			break
		}
		dst = append(dst, data[:i]...)
		dst = append(dst, "\ndata: "...)
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	dst = append(dst, data...)
	return append(dst, "\n\n"...)
}
