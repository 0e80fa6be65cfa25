package fsm

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/sluicehq/sluice/cluster/state"
)

// Snapshot format: the magic string, then records. A record is one type
// byte, a uvarint length and that many bytes of JSON. The first record is
// the header, the last is recEnd. Record types, like command types, are
// never renumbered; an unknown type with ignorableRecord set is skipped.
const snapshotMagic = "SLUICE-FSM\n"

type recordType uint8

const (
	recHeader     recordType = 1
	recProvider   recordType = 2
	recDeployment recordType = 3
	recModel      recordType = 4
	recTenant     recordType = 5
	recKey        recordType = 6
	recPolicy     recordType = 7
	recAudit      recordType = 8
	// 9-31 are reserved. 32-63 hold section states: the record type is
	// the section's command type with ignorableRecord set, so a build
	// without that section skips its state (sections are state nothing
	// in the configuration depends on). A snapshot without a section's
	// record restores that section empty.
	recEnd recordType = 127

	ignorableRecord recordType = 0x80
)

// snapshotFormat is the version in the header; Restore refuses newer ones.
const snapshotFormat = 1

// maxRecord bounds one record, so a corrupt length cannot allocate wildly.
const maxRecord = 64 << 20

type snapshotHeader struct {
	Format  int    `json:"format"`
	Applied uint64 `json:"applied"`
	Version uint64 `json:"version"`
}

// Image is a decoded snapshot, for an operator restore.
type Image struct {
	// Applied is the last applied index and Version the configuration
	// version when the snapshot was written.
	Applied, Version uint64
	Config           state.Config
	Audit            []AuditEntry
}

// ReadSnapshot decodes a snapshot written by WriteSnapshot or by raft.
func ReadSnapshot(r io.Reader) (*Image, error) {
	img, applied, _, err := readImage(r)
	if err != nil {
		return nil, err
	}
	return &Image{
		Applied: applied, Version: img.snap.Version,
		Config: img.config.Clone(), Audit: append([]AuditEntry(nil), img.audit...),
	}, nil
}

type recordWriter struct {
	w   *bufio.Writer
	err error
	buf [binary.MaxVarintLen64]byte
}

func (rw *recordWriter) write(t recordType, v any) {
	if rw.err != nil {
		return
	}
	body, err := json.Marshal(v)
	if err != nil {
		rw.err = err
		return
	}
	rw.writeRaw(t, body)
}

// writeRaw writes a record whose body is already encoded.
func (rw *recordWriter) writeRaw(t recordType, body []byte) {
	if rw.err != nil {
		return
	}
	if len(body) > maxRecord {
		rw.err = fmt.Errorf("record of type %d: %d bytes exceeds %d", t, len(body), maxRecord)
		return
	}
	rw.err = rw.w.WriteByte(byte(t))
	if rw.err == nil {
		n := binary.PutUvarint(rw.buf[:], uint64(len(body)))
		_, rw.err = rw.w.Write(rw.buf[:n])
	}
	if rw.err == nil {
		_, rw.err = rw.w.Write(body)
	}
}

// sectionState is one section's encoded state in a snapshot.
type sectionState struct {
	t     CommandType
	state []byte
}

func writeImage(w io.Writer, img *image, applied uint64, sections []sectionState) error {
	rw := &recordWriter{w: bufio.NewWriter(w)}
	if _, err := rw.w.WriteString(snapshotMagic); err != nil {
		return err
	}
	rw.write(recHeader, snapshotHeader{Format: snapshotFormat, Applied: applied, Version: img.snap.Version})
	c := &img.config
	for i := range c.Providers {
		rw.write(recProvider, &c.Providers[i])
	}
	for i := range c.Deployments {
		rw.write(recDeployment, &c.Deployments[i])
	}
	for i := range c.Models {
		rw.write(recModel, &c.Models[i])
	}
	for i := range c.Tenants {
		rw.write(recTenant, &c.Tenants[i])
	}
	for i := range c.Keys {
		rw.write(recKey, &c.Keys[i])
	}
	for i := range c.Policies {
		rw.write(recPolicy, &c.Policies[i])
	}
	for i := range img.audit {
		rw.write(recAudit, &img.audit[i])
	}
	for _, s := range sections {
		rw.writeRaw(recordType(s.t)|ignorableRecord, s.state)
	}
	rw.write(recEnd, struct{}{})
	if rw.err != nil {
		return rw.err
	}
	return rw.w.Flush()
}

// decodeInto appends the JSON body to *list.
func decodeInto[T any](list *[]T, body []byte) error {
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		return err
	}
	*list = append(*list, v)
	return nil
}

// readImage decodes a snapshot into a fresh image and the section records
// by type; the state it will replace is untouched until the whole
// snapshot has been read and built.
func readImage(r io.Reader) (*image, uint64, map[CommandType][]byte, error) {
	br := bufio.NewReader(r)
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != snapshotMagic {
		return nil, 0, nil, errors.New("not a sluice snapshot")
	}
	var (
		hdr       *snapshotHeader
		cfg       state.Config
		audit     []AuditEntry
		sections  = map[CommandType][]byte{}
		sawEnd    bool
		recordNum int
	)
	for !sawEnd {
		recordNum++
		tb, err := br.ReadByte()
		if err != nil {
			return nil, 0, nil, fmt.Errorf("record %d: %w", recordNum, noEOF(err))
		}
		n, err := binary.ReadUvarint(br)
		if err != nil {
			return nil, 0, nil, fmt.Errorf("record %d length: %w", recordNum, noEOF(err))
		}
		if n > maxRecord {
			return nil, 0, nil, fmt.Errorf("record %d: length %d too large", recordNum, n)
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(br, body); err != nil {
			return nil, 0, nil, fmt.Errorf("record %d: %w", recordNum, noEOF(err))
		}
		t := recordType(tb)
		if hdr == nil && t != recHeader {
			return nil, 0, nil, errors.New("snapshot does not start with a header")
		}
		switch t {
		case recHeader:
			if hdr != nil {
				return nil, 0, nil, errors.New("snapshot has two headers")
			}
			hdr = new(snapshotHeader)
			err = json.Unmarshal(body, hdr)
			if err == nil && hdr.Format > snapshotFormat {
				err = fmt.Errorf("format %d is newer than this build reads (%d)", hdr.Format, snapshotFormat)
			}
		case recProvider:
			err = decodeInto(&cfg.Providers, body)
		case recDeployment:
			err = decodeInto(&cfg.Deployments, body)
		case recModel:
			err = decodeInto(&cfg.Models, body)
		case recTenant:
			err = decodeInto(&cfg.Tenants, body)
		case recKey:
			err = decodeInto(&cfg.Keys, body)
		case recPolicy:
			err = decodeInto(&cfg.Policies, body)
		case recAudit:
			err = decodeInto(&audit, body)
		case recEnd:
			sawEnd = true
		default:
			if st := CommandType(t &^ ignorableRecord); isSectionType(st) && t&ignorableRecord != 0 {
				// Kept for the FSM to hand to its section; a build without
				// that section drops it (the ignorable rule).
				if _, dup := sections[st]; dup {
					err = fmt.Errorf("section %d has two records", st)
				}
				sections[st] = body
			} else if t&ignorableRecord == 0 {
				err = fmt.Errorf("unknown record type %d", t)
			}
		}
		if err != nil {
			return nil, 0, nil, fmt.Errorf("record %d (type %d): %w", recordNum, t, err)
		}
	}
	snap, err := state.Build(cfg, hdr.Version)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("snapshot configuration: %w", err)
	}
	if len(audit) > AuditLimit {
		audit = audit[len(audit)-AuditLimit:]
	}
	return &image{config: cfg, audit: audit, snap: snap}, hdr.Applied, sections, nil
}

func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
