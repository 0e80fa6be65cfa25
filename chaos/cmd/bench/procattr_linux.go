package main

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal kills the child if the bench dies without stopping
// it, so that no system under test outlives an interrupted run.
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
