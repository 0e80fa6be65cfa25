//go:build !linux

package main

import "os/exec"

// setParentDeathSignal is Linux only; elsewhere the bench stops its
// children on the way out as usual.
func setParentDeathSignal(*exec.Cmd) {}
