package deploy_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	// buildBudget bounds building the images (a cold Go build cache on a
	// busy 2-core machine is the slow case).
	buildBudget = 4 * time.Minute
	// clusterBudget bounds the cluster part: up, checks, rolling restart
	// (about a minute when measured).
	clusterBudget = 4 * time.Minute
	// devAdminToken is the dev-only admin token in compose/admin-tokens.
	devAdminToken = "dev-admin-token-0000"
	// demoKey is the dev-only virtual key seeded by compose/sluice.yaml.
	demoKey = "sk-sluice-demo"
)

// composeCmd returns the compose command line: the v2 plugin when the
// docker CLI has it, else docker-compose v1.
func composeCmd(ctx context.Context) ([]string, error) {
	if exec.CommandContext(ctx, "docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}, nil
	}
	if _, err := exec.LookPath("docker-compose"); err == nil {
		return []string{"docker-compose"}, nil
	}
	return nil, errors.New("neither `docker compose` nor docker-compose is installed")
}

// requireDocker skips the test when Docker is unusable, except in CI
// (CI=true), where the compose test must run.
func requireDocker(t *testing.T, ctx context.Context) []string {
	t.Helper()
	fail := t.Skipf
	if os.Getenv("CI") == "true" {
		fail = t.Fatalf
	}
	if _, err := exec.LookPath("docker"); err != nil {
		fail("docker is not installed: %v", err)
	}
	if out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		fail("the docker daemon is not reachable: %v: %s", err, out)
	}
	cmd, err := composeCmd(ctx)
	if err != nil {
		fail("%v", err)
	}
	return cmd
}

// composeProject drives one compose project of deploy/compose.yaml.
type composeProject struct {
	t    *testing.T
	cmd  []string
	name string
	env  []string
}

func (p *composeProject) run(ctx context.Context, args ...string) (string, error) {
	full := append(append(append([]string{}, p.cmd[1:]...), "-p", p.name, "-f", "compose.yaml"), args...)
	c := exec.CommandContext(ctx, p.cmd[0], full...)
	c.Env = append(os.Environ(), p.env...)
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	err := c.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s", p.cmd[0], strings.Join(full, " "), err, out.String())
	}
	return out.String(), nil
}

func (p *composeProject) must(ctx context.Context, args ...string) string {
	p.t.Helper()
	out, err := p.run(ctx, args...)
	if err != nil {
		p.t.Fatal(err)
	}
	return out
}

// port returns the host address a service's container port is published on.
func (p *composeProject) port(ctx context.Context, service, port string) string {
	p.t.Helper()
	out := strings.Fields(p.must(ctx, "port", service, port))
	if len(out) == 0 {
		p.t.Fatalf("no published port for %s:%s", service, port)
	}
	return out[len(out)-1]
}

// nodeStatus is the part of `sluice status` the test reads.
type nodeStatus struct {
	Status struct {
		RaftState string `json:"raft_state"`
		LeaderID  string `json:"leader_id"`
		Voters    int    `json:"voters"`
	} `json:"status"`
	ConfigVersion uint64 `json:"config_version"`
}

// status runs `sluice status` inside a node's container (the image has no
// shell, but exec runs the binary directly).
func (p *composeProject) status(ctx context.Context, service string) (nodeStatus, error) {
	var st nodeStatus
	out, err := p.run(ctx, "exec", "-T", "-e", "SLUICE_ADMIN_TOKEN="+devAdminToken, service,
		"/usr/local/bin/sluice", "status", "-timeout", "5s")
	if err != nil {
		return st, err
	}
	if i := strings.IndexByte(out, '{'); i >= 0 {
		out = out[i:]
	}
	// The output may carry a log line after the JSON (docker exec merges
	// the streams): decode the first value only.
	if err := json.NewDecoder(strings.NewReader(out)).Decode(&st); err != nil {
		return st, fmt.Errorf("decode status: %w: %s", err, out)
	}
	return st, nil
}

// cli runs the sluice CLI built with the images against an admin address.
func cli(ctx context.Context, bin, addr string, args ...string) (string, error) {
	c := exec.CommandContext(ctx, filepath.Join(bin, "sluice"), args...)
	c.Env = append(os.Environ(), "SLUICE_ADDR="+addr, "SLUICE_ADMIN_TOKEN="+devAdminToken)
	out, err := c.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("sluice %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// aliveMembers counts the members `sluice members` lists as alive.
func aliveMembers(out string) int {
	n := 0
	for _, line := range strings.Split(out, "\n")[1:] {
		if f := strings.Fields(line); len(f) > 1 && f[1] == "alive" {
			n++
		}
	}
	return n
}

// poll calls ok until it returns nil or the deadline passes.
func poll(t *testing.T, ctx context.Context, d time.Duration, what string, ok func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		err := ok()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %v waiting for %s: %v", d, what, err)
		case <-tick.C:
		}
	}
}

// chat sends one small chat completion with key through addr.
func chat(ctx context.Context, c *http.Client, addr, key string) (int, string, error) {
	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}],"max_tokens":8}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, string(b), err
}

// load sends requests through the front from a few workers until stopped,
// each at most every loadInterval, retrying once on a connection error (as
// a client would after a DNS answer went stale) and up to five times
// after a 429, and records every request that got no 200.
type load struct {
	ok      atomic.Int64
	retried atomic.Int64
	// retried429 counts retries after a 429 (each honours its wait).
	retried429 atomic.Int64
	mu         sync.Mutex
	failed     map[string]int // by status or error kind
	examples   []string       // the first few failures, with their time
}

// loadInterval paces each load worker: light load, and a failing node
// cannot make the workers spin.
const loadInterval = 100 * time.Millisecond

func (l *load) run(ctx context.Context, wg *sync.WaitGroup, workers int, addr string) {
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 30 * time.Second}
			defer c.CloseIdleConnections()
			pace := time.NewTicker(loadInterval)
			defer pace.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-pace.C:
				}
				status, body, err := chat(ctx, c, addr, demoKey)
				if err != nil && ctx.Err() == nil {
					l.retried.Add(1)
					status, body, err = chat(ctx, c, addr, demoKey)
				}
				// The client retries a 429 after a second (the retry-after
				// of a spent share), up to five times: for a few seconds
				// after a node stops, its share is held until its lease
				// surely ended, and a restarted node starts with a small
				// one, so some requests are refused and come back.
				for try := 0; try < 5 && err == nil && status == http.StatusTooManyRequests && ctx.Err() == nil; try++ {
					l.retried429.Add(1)
					select {
					case <-ctx.Done():
					case <-time.After(time.Second):
					}
					status, body, err = chat(ctx, c, addr, demoKey)
				}
				switch {
				case ctx.Err() != nil:
					return
				case err != nil:
					l.fail("connection error", fmt.Sprintf("after one retry: %v", err))
				case status != http.StatusOK:
					l.fail(fmt.Sprintf("status %d", status), fmt.Sprintf("status %d: %.200s", status, body))
				default:
					l.ok.Add(1)
				}
			}
		}()
	}
}

func (l *load) fail(kind, detail string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failed == nil {
		l.failed = map[string]int{}
	}
	l.failed[kind]++
	if len(l.examples) < 5 {
		l.examples = append(l.examples, time.Now().Format("15:04:05.000")+" "+detail)
	}
}

// TestCompose builds the images, starts deploy/compose.yaml, and restarts
// the three nodes one at a time under light load: every request through
// the front must be answered, and a key created before the restarts must
// still work after them. It needs Docker; it is skipped without it (and
// with -short) except in CI, where missing Docker fails it.
func TestCompose(t *testing.T) {
	if testing.Short() {
		t.Skip("starts containers; skipped with -short")
	}
	bctx, bcancel := context.WithTimeout(context.Background(), buildBudget)
	defer bcancel()
	cmd := requireDocker(t, bctx)
	start := time.Now()
	lap := start
	timing := func(what string) {
		now := time.Now()
		t.Logf("%-34s %6.1fs (total %5.1fs)", what, now.Sub(lap).Seconds(), now.Sub(start).Seconds())
		lap = now
	}

	// Images under a tag of this run's own (removed at the end), and the
	// CLI built with them.
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	id := hex.EncodeToString(suffix[:])
	imageTag := "test-" + id
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
		defer ccancel()
		for _, repo := range []string{"sluice", "sluice-mockllm", "sluice-front", "sluice-prometheus"} {
			_ = exec.CommandContext(cctx, "docker", "rmi", repo+":"+imageTag).Run()
		}
	})
	bin := t.TempDir()
	build := exec.CommandContext(bctx, "./build-images.sh")
	build.Env = append(os.Environ(), "TAG="+imageTag, "VERSION=composetest", "BIN_DIR="+bin)
	build.WaitDelay = 10 * time.Second // do not hang on children holding the output open
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build-images.sh: %v\n%s", err, out)
	} else {
		t.Logf("build-images.sh:\n%s", strings.TrimSpace(string(out)))
	}
	timing("images built")
	bcancel()

	ctx, cancel := context.WithTimeout(context.Background(), clusterBudget)
	defer cancel()

	p := &composeProject{t: t, cmd: cmd, name: "sluicetest" + id,
		env: []string{"SLUICE_TAG=" + imageTag, "SLUICE_PORT=", "SLUICE_ADMIN_PORT="}}
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer ccancel()
		if t.Failed() {
			out, _ := p.run(cctx, "logs", "--no-color", "--tail", "60")
			t.Logf("compose logs:\n%s", out)
		}
		if _, err := p.run(cctx, "down", "-v", "--remove-orphans", "-t", "5"); err != nil {
			t.Errorf("compose down: %v", err)
		}
	})
	p.must(ctx, "up", "-d")
	timing("compose up -d")

	front := p.port(ctx, "front", "8080")
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	poll(t, ctx, 90*time.Second, "a chat completion through the front", func() error {
		status, body, err := chat(ctx, client, front, demoKey)
		if err == nil && status != http.StatusOK {
			err = fmt.Errorf("status %d: %.200s", status, body)
		}
		return err
	})
	timing("first completion through the front")

	admin := p.port(ctx, "node1", "9080")
	poll(t, ctx, 60*time.Second, "3 alive members", func() error {
		out, err := cli(ctx, bin, admin, "members")
		if err == nil && aliveMembers(out) != 3 {
			err = fmt.Errorf("members:\n%s", out)
		}
		return err
	})
	timing("sluice members: 3 alive")

	// A key created before the restarts; its config version is the one each
	// restarted node must reach again.
	out, err := cli(ctx, bin, admin, "keys", "create", "--tenant", "demo", "--id", "before-restarts")
	if err != nil {
		t.Fatal(err)
	}
	var newKey string
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "key:"); ok {
			newKey = strings.TrimSpace(v)
		}
	}
	if newKey == "" {
		t.Fatalf("no key in the output of keys create:\n%s", out)
	}
	st, err := p.status(ctx, "node1")
	if err != nil {
		t.Fatal(err)
	}
	version := st.ConfigVersion
	timing("key created")

	// Rolling restart under light load.
	var l load
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	l.run(loadCtx, &wg, 2, front)
	for _, node := range []string{"node1", "node2", "node3"} {
		p.must(ctx, "restart", "-t", "20", node)
		timing(node + " restart command")
		poll(t, ctx, 60*time.Second, node+" back with the configuration", func() error {
			st, err := p.status(ctx, node)
			switch {
			case err != nil:
				return err
			case st.Status.LeaderID == "" || st.Status.Voters != 3:
				return fmt.Errorf("raft: %+v", st.Status)
			case st.ConfigVersion < version:
				return fmt.Errorf("config version %d < %d", st.ConfigVersion, version)
			}
			return nil
		})
		admin = p.port(ctx, "node1", "9080") // a restart may move the published port
		poll(t, ctx, 60*time.Second, node+" alive in members", func() error {
			out, err := cli(ctx, bin, admin, "members")
			if err == nil && aliveMembers(out) != 3 {
				err = fmt.Errorf("members:\n%s", out)
			}
			return err
		})
		timing(node + " back: raft, config, members")
	}
	stopLoad()
	wg.Wait()
	t.Logf("load during the restarts: %d answered, %d retried once after a connection error, %d retries after a 429, failed: %v",
		l.ok.Load(), l.retried.Load(), l.retried429.Load(), l.failed)
	if len(l.failed) > 0 {
		t.Errorf("requests through the front got no answer during the rolling restart: %v; first ones:\n%s",
			l.failed, strings.Join(l.examples, "\n"))
	}
	if l.ok.Load() == 0 {
		t.Error("no request succeeded during the restarts")
	}

	// The key created before the restarts works on every node (the front
	// round-robins new connections).
	fresh := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := range 6 {
		status, body, err := chat(ctx, fresh, front, newKey)
		if err != nil || status != http.StatusOK {
			t.Errorf("request %d with the key created before the restarts: %d %v %.200s", i, status, err, body)
		}
	}
	timing("key still works")
}
