package load

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// ErrProcFormat reports a /proc file that does not parse.
var ErrProcFormat = errors.New("unexpected /proc format")

// clockTick is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
// Linux fixes it at 100 on every architecture Go supports.
const clockTick = 10 * time.Millisecond

// ProcSample is what a process has used so far, read from Linux's /proc.
type ProcSample struct {
	// CPU is user plus system time.
	CPU time.Duration
	// RSS is the resident set now (VmRSS); PeakRSS its high-water mark
	// since the process started (VmHWM). Bytes.
	RSS, PeakRSS int64
}

// ReadProc samples the process pid. It works on Linux only.
func ReadProc(pid int) (ProcSample, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcSample{}, fmt.Errorf("read stat: %w", err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ProcSample{}, fmt.Errorf("read status: %w", err)
	}
	var s ProcSample
	if s.CPU, err = ParseStatCPU(stat); err != nil {
		return ProcSample{}, err
	}
	if s.RSS, s.PeakRSS, err = ParseStatusRSS(status); err != nil {
		return ProcSample{}, err
	}
	return s, nil
}

// ParseStatCPU returns utime+stime from the contents of /proc/<pid>/stat.
// The command name (field 2) is in parentheses and may itself hold spaces
// and parentheses, so fields are counted from the last ')'.
func ParseStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("%w: stat has no command name", ErrProcFormat)
	}
	// After ") " come field 3 (state) onwards; utime and stime are fields
	// 14 and 15, so indexes 11 and 12 here.
	f := bytes.Fields(b[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("%w: stat has %d fields after the name", ErrProcFormat, len(f))
	}
	var ticks int64
	for _, field := range f[11:13] {
		v, err := strconv.ParseInt(string(field), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: stat cpu field: %w", ErrProcFormat, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * clockTick, nil
}

// ParseStatusRSS returns VmRSS and VmHWM in bytes from the contents of
// /proc/<pid>/status.
func ParseStatusRSS(b []byte) (rss, hwm int64, err error) {
	var gotRSS, gotHWM bool
	for line := range bytes.Lines(b) {
		var dst *int64
		switch {
		case bytes.HasPrefix(line, []byte("VmRSS:")):
			dst, gotRSS = &rss, true
		case bytes.HasPrefix(line, []byte("VmHWM:")):
			dst, gotHWM = &hwm, true
		default:
			continue
		}
		f := bytes.Fields(line)
		if len(f) != 3 || string(f[2]) != "kB" {
			return 0, 0, fmt.Errorf("%w: status line %q", ErrProcFormat, bytes.TrimSpace(line))
		}
		kb, err := strconv.ParseInt(string(f[1]), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%w: status line %q: %w", ErrProcFormat, bytes.TrimSpace(line), err)
		}
		*dst = kb << 10
	}
	if !gotRSS || !gotHWM {
		return 0, 0, fmt.Errorf("%w: status has no VmRSS/VmHWM", ErrProcFormat)
	}
	return rss, hwm, nil
}
