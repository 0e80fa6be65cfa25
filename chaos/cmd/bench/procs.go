package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/chaos/load"
	"github.com/sluicehq/sluice/cluster/state"
)

// errNotReady reports a child process that did not come up in time.
var errNotReady = errors.New("not ready")

const (
	mockKeyEnv    = "BENCH_MOCK_KEY"
	readyTimeout  = 60 * time.Second
	stopTimeout   = 15 * time.Second
	azureVersion  = "2024-10-21"
	adminTokenEnv = "SLUICE_ADMIN_TOKENS"
)

// proc is one child process: the mock or (part of) a system under test.
// Its standard output and error go to a log file in the run's directory.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process exited
	err     error         // its exit status, set before done closes
	once    sync.Once
}

// startProc starts bin with args; the caller owns it and must stop it.
func startProc(dir, name string, env []string, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("%s: log file: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = dir
	setParentDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("%s: start: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = logf.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop asks the process to drain and exit (SIGTERM), kills it if it has
// not exited within stopTimeout, and waits for it. It is idempotent.
func (p *proc) stop() {
	p.once.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		t := time.NewTimer(stopTimeout)
		defer t.Stop()
		select {
		case <-p.done:
		case <-t.C:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
}

// exited reports whether the process has already ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// tail returns the end of the process's log, for error messages.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.logPath)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// poll calls cond every 50 ms until it returns true, the process exits,
// or timeout passes.
func (p *proc) poll(ctx context.Context, timeout time.Duration, what string, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if cond() {
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%s exited (%v) before %s: %s", p.name, p.err, what, p.tail())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w: %s after %v: %s", p.name, errNotReady, what, timeout, p.tail())
		case <-tick.C:
		}
	}
}

// listenAddr waits for the "listening ADDR" line of a hidden subcommand.
func (p *proc) listenAddr(ctx context.Context) (string, error) {
	var addr string
	err := p.poll(ctx, readyTimeout, "listening", func() bool {
		b, _ := os.ReadFile(p.logPath)
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "listening "); ok {
				addr = strings.TrimSpace(a)
				return true
			}
		}
		return false
	})
	return addr, err
}

// freePort returns a loopback address whose port the kernel just handed
// out. Another process could take it before the child binds it; on a
// bench machine that is rare and shows as a start-up error.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// sample reads CPU and memory of every process of a system.
func sample(procs []*proc) ([]load.ProcSample, error) {
	out := make([]load.ProcSample, len(procs))
	for i, p := range procs {
		s, err := load.ReadProc(p.pid())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.name, err)
		}
		out[i] = s
	}
	return out, nil
}

// buildSluice builds node/cmd/sluice into dir with CGO_ENABLED=0 from the
// module that holds the working directory.
func buildSluice(ctx context.Context, dir string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("no go tool to build sluice (or give -sluice-bin): %w", err)
	}
	out, err := exec.CommandContext(ctx, goBin, "env", "GOMOD").Output()
	mod := strings.TrimSpace(string(out))
	if err != nil || mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("build sluice: run from the Sluice module or give -sluice-bin (go env GOMOD: %q, %v)", mod, err)
	}
	bin := filepath.Join(dir, "sluice")
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", bin, "./node/cmd/sluice")
	cmd.Dir = filepath.Dir(mod)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build sluice: %w: %s", err, out)
	}
	return bin, nil
}

// sluiceConfig routes model fastDeployment and slowDeployment to the mock,
// with no quota anywhere so that admission never refuses.
func sluiceConfig(mockURL string) state.Config {
	return state.Config{
		Providers: []state.Provider{{Name: "mock", Kind: state.KindAzure, Endpoint: mockURL, APIKey: "env:" + mockKeyEnv, APIVersion: azureVersion}},
		Deployments: []state.Deployment{
			{Name: "bench-chat", Provider: "mock", Upstream: fastDeployment},
			{Name: "bench-slow", Provider: "mock", Upstream: slowDeployment},
		},
		Models: []state.Model{
			{Name: fastDeployment, Deployments: []string{"bench-chat"}},
			{Name: slowDeployment, Deployments: []string{"bench-slow"}},
		},
		Tenants: []state.Tenant{{Name: "bench"}},
		Keys:    []state.Key{{ID: "bench", Hash: state.HashKey(benchKey), Tenant: "bench"}},
	}
}

func writeConfig(dir, mockURL string) (string, error) {
	b, err := json.MarshalIndent(sluiceConfig(mockURL), "", "  ")
	if err != nil {
		return "", fmt.Errorf("config: %w", err)
	}
	path := filepath.Join(dir, "sluice.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return "", fmt.Errorf("config: %w", err)
	}
	return path, nil
}

func randomToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// waitServing polls a Sluice node until /readyz answers 200 and a chat
// request through it succeeds (a cluster member gets its configuration
// from raft a little after it is up).
func waitServing(ctx context.Context, p *proc, apiAddr string) error {
	client := &http.Client{Timeout: 2 * time.Second}
	defer client.CloseIdleConnections()
	probe := func(req *http.Request) bool {
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode == http.StatusOK
	}
	return p.poll(ctx, readyTimeout, "serving", func() bool {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+apiAddr+"/readyz", nil)
		if !probe(req) {
			return false
		}
		req, _ = http.NewRequestWithContext(ctx, http.MethodPost, "http://"+apiAddr+"/v1/chat/completions", strings.NewReader(chatBody(fastDeployment, false, 0)))
		req.Header.Set("Authorization", "Bearer "+benchKey)
		req.Header.Set("Content-Type", "application/json")
		return probe(req)
	})
}

// node addresses of one cluster member.
type memberAddrs struct{ api, gossip, cluster, admin string }

func clusterAddrs(n int) ([]memberAddrs, error) {
	out := make([]memberAddrs, n)
	for i := range out {
		for _, dst := range []*string{&out[i].api, &out[i].gossip, &out[i].cluster, &out[i].admin} {
			a, err := freePort()
			if err != nil {
				return nil, err
			}
			*dst = a
		}
	}
	return out, nil
}

func itoa(i int) string { return strconv.Itoa(i) }
