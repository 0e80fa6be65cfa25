// Command sluice runs a Sluice node (sluice agent) and talks to a cluster's
// admin API (the other subcommands).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/admin"
	"github.com/sluicehq/sluice/cluster"
	"github.com/sluicehq/sluice/cluster/state"
	"github.com/sluicehq/sluice/node"
	"github.com/sluicehq/sluice/router"
)

const usage = `sluice: an LLM gateway cluster.

Usage:
  sluice agent [flags]     run a node (sluice agent -h for its flags)
  sluice members           list the cluster's members
  sluice status            leader, raft state, config version
  sluice apply -f FILE [--dry-run]
                           apply a declarative configuration
  sluice keys create --tenant T | list | revoke ID
                           manage virtual keys
  sluice usage [--tenant T] [--from -1h] [--group-by tenant,model] [--bucket hour] [--csv]
                           usage totals from the ledger
  sluice version           print the version

Admin commands talk to SLUICE_ADDR (default 127.0.0.1:9080) with the token in
SLUICE_ADMIN_TOKEN; each takes -h.

Environment:
  provider secrets are read from the variables their env:NAME references name.
`

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "agent":
		return agent(args[1:], stderr)
	case "version":
		fmt.Fprintln(stdout, version)
		return 0
	case "members", "status", "apply", "keys", "usage":
		return runAdmin(args[0], args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "sluice: unknown command %q\n\n%s", args[0], usage)
	return 2
}

func agent(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		configPath = fs.String("config", "", "declarative configuration file (YAML); required")
		listen     = fs.String("listen", "127.0.0.1:8080", "address of the OpenAI/Azure API")
		maxBody    = fs.Int64("max-body-bytes", 1<<20, "largest request body accepted")
		logFormat  = fs.String("log-format", "text", "log format: text or json")
		logLevel   = fs.String("log-level", "info", "log level: debug, info, warn or error")
		drain      = fs.Duration("drain-timeout", 30*time.Second, "how long shutdown waits for requests in flight")
		dataDir    = fs.String("data-dir", "", "raft data directory; set it to run as a cluster member (else standalone)")
		nodeID     = fs.String("node-id", "", "unique node ID (default: the host name)")
		gossipAddr = fs.String("gossip-addr", "127.0.0.1:7946", "memberlist gossip address")
		clusterAdr = fs.String("cluster-addr", "127.0.0.1:7947", "raft and forwarding address")
		join       = fs.String("join", "", "comma-separated peers (host:port gossip addresses or DNS names resolving to all peers)")
		expect     = fs.Int("bootstrap-expect", 0, "bootstrap a new cluster once this many servers see each other")
		region     = fs.String("region", "", "this node's region, carried in gossip")
		adminAddr  = fs.String("admin-listen", "127.0.0.1:9080", "admin API address (cluster members; tokens from SLUICE_ADMIN_TOKENS or -admin-tokens-file)")
		tokensFile = fs.String("admin-tokens-file", "", "file of admin tokens, one name:role:token per line")
	)
	fs.Usage = func() {
		fmt.Fprint(stderr, `Usage: sluice agent -config FILE [flags]        (standalone)
       sluice agent -data-dir DIR [-config SEED] [flags]  (cluster member)

Runs a Sluice node. Standalone: SIGHUP reloads the file. Cluster member: the
configuration is replicated; -config seeds an empty cluster once.
SIGINT/SIGTERM drain and stop. SLUICE_GOSSIP_KEY (base64, 16/24/32 bytes)
encrypts gossip.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	logger, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		fmt.Fprintln(stderr, "sluice agent:", err)
		return 2
	}
	if *configPath == "" && *dataDir == "" {
		fmt.Fprintln(stderr, "sluice agent: -config is required for a standalone node (or -data-dir for a cluster member)")
		fs.Usage()
		return 2
	}
	ncfg := node.Config{APIAddr: *listen, DrainTimeout: *drain, Logger: logger, Router: router.Config{MaxBodyBytes: *maxBody}}
	var cfg state.Config
	if *configPath != "" {
		c, err := node.LoadConfig(*configPath)
		if err != nil {
			logger.Error("cannot start", "err", err)
			return 1
		}
		cfg = c
	}
	if *dataDir != "" {
		cc := cluster.DefaultConfig()
		cc.DataDir, cc.Region, cc.Version = *dataDir, *region, version
		if *nodeID != "" {
			cc.NodeID = *nodeID
		}
		cc.GossipAddr, cc.ClusterAddr, cc.BootstrapExpect = *gossipAddr, *clusterAdr, *expect
		if *join != "" {
			cc.Join = strings.Split(*join, ",")
		}
		if k := os.Getenv("SLUICE_GOSSIP_KEY"); k != "" {
			key, err := cluster.DecodeGossipKey(k)
			if err != nil {
				logger.Error("cannot start: SLUICE_GOSSIP_KEY", "err", err)
				return 1
			}
			cc.GossipKey = key
		}
		ncfg.Cluster = &cc
		tokens, err := admin.LoadTokens(os.Getenv(admin.TokensEnv), *tokensFile)
		if err != nil {
			logger.Error("cannot start: admin tokens", "err", err)
			return 1
		}
		key, err := admin.LoadClusterKey(os.Getenv(admin.ClusterKeyEnv))
		if err != nil {
			logger.Error("cannot start: cluster key", "err", err)
			return 1
		}
		ac := admin.DefaultConfig()
		ac.Addr, ac.Tokens, ac.ClusterKey, ac.Logger = *adminAddr, tokens, key, logger
		ncfg.Admin = &ac
		if *configPath != "" {
			ncfg.SeedConfig = &cfg
		}
	}
	n := node.New(ncfg)
	if ncfg.Cluster == nil {
		if err := n.Install(cfg); err != nil {
			logger.Error("cannot start", "err", err)
			return 1
		}
	}
	if err := n.Start(); err != nil {
		logger.Error("cannot start", "err", err)
		return 1
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	for sig := range sigs {
		if sig == syscall.SIGHUP && ncfg.Cluster == nil {
			c, err := node.LoadConfig(*configPath)
			if err == nil {
				err = n.Install(c)
			}
			if err != nil {
				logger.Error("reload refused; keeping the current configuration", "err", err)
			}
			continue
		}
		logger.Info("shutting down", "signal", sig.String())
		break
	}
	ctx, cancel := context.WithTimeout(context.Background(), *drain+5*time.Second)
	defer cancel()
	if err := n.Shutdown(ctx); err != nil {
		logger.Error("shutdown", "err", err)
		return 1
	}
	return 0
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("bad -log-level %q", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("bad -log-format %q (want text or json)", format)
}
