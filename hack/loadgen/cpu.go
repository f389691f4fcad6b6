package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// cpuWindow measures the CPU time a process uses between begin and end, from /proc/<pid>/stat
// (utime and stime, all threads). A nil *cpuWindow measures nothing.
type cpuWindow struct {
	pid   int
	start time.Duration
	used  time.Duration
	err   error
}

func (c *cpuWindow) begin() {
	if c == nil {
		return
	}
	c.start, c.err = processCPU(c.pid)
}

func (c *cpuWindow) end() {
	if c == nil || c.err != nil {
		return
	}
	var now time.Duration
	now, c.err = processCPU(c.pid)
	c.used = now - c.start
}

// clockTick is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every Linux ABI Go runs on.
const clockTick = 10 * time.Millisecond

// processCPU is utime+stime of pid (proc(5): fields 14 and 15, after the parenthesised comm,
// which may itself contain spaces and parentheses).
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	ut, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	st, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return time.Duration(ut+st) * clockTick, nil
}
