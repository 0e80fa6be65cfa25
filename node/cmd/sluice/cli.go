package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sluicehq/sluice/admin"
)

// cliCommand is one admin subcommand: its flags and what it does.
type cliCommand struct {
	usage string
	run   func(ctx context.Context, c *admin.Client, fs *flag.FlagSet, args []string, out io.Writer) error
}

var cliCommands = map[string]cliCommand{
	"members": {"sluice members            list the cluster's members and their state", cmdMembers},
	"status":  {"sluice status             show the leader, raft state and config version", cmdStatus},
	"apply":   {"sluice apply -f FILE [--dry-run]   apply a whole declarative config", cmdApply},
	"keys":    {"sluice keys create --tenant T [--id ID] [--models a,b] | list | revoke ID", cmdKeys},
	"usage":   {usageUsage, cmdUsage},
}

// errUsage marks a mistake in the command line (exit code 2).
var errUsage = errors.New("usage")

// admin runs an admin subcommand against SLUICE_ADDR with SLUICE_ADMIN_TOKEN.
func runAdmin(name string, args []string, stdout, stderr io.Writer) int {
	cmd := cliCommands[name]
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", envOr("SLUICE_ADDR", "127.0.0.1:9080"), "admin API address (env SLUICE_ADDR)")
	token := fs.String("token", os.Getenv("SLUICE_ADMIN_TOKEN"), "admin token (env SLUICE_ADMIN_TOKEN)")
	timeout := fs.Duration("timeout", 30*time.Second, "how long the command may take")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s\n\nFlags:\n", cmd.usage)
		fs.PrintDefaults()
	}
	c := &admin.Client{Addr: *addr, Token: *token}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	err := cmd.run(ctx, c, fs, args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if errors.Is(err, errUsage) {
		fs.Usage()
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "sluice %s: %v\n", name, err)
		return 1
	}
	return 0
}

// parse parses flags, then reads addr/token again (flags were declared
// before parsing so that -addr after the subcommand works).
func parse(c *admin.Client, fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	c.Addr = fs.Lookup("addr").Value.String()
	c.Token = fs.Lookup("token").Value.String()
	if c.Token == "" {
		return fmt.Errorf("no admin token: set SLUICE_ADMIN_TOKEN or -token")
	}
	return nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func cmdMembers(ctx context.Context, c *admin.Client, fs *flag.FlagSet, args []string, out io.Writer) error {
	if err := parse(c, fs, args); err != nil {
		return err
	}
	ms, err := c.Members(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tREGION\tAPI\tADMIN\tGOSSIP\tCLUSTER\tVERSION")
	for _, m := range ms {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, m.State, m.Region, m.APIAddr, m.AdminAddr, m.GossipAddr, m.ClusterAddr, m.Version)
	}
	return tw.Flush()
}

func cmdStatus(ctx context.Context, c *admin.Client, fs *flag.FlagSet, args []string, out io.Writer) error {
	if err := parse(c, fs, args); err != nil {
		return err
	}
	st, err := c.Status(ctx)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(st)
}

func cmdApply(ctx context.Context, c *admin.Client, fs *flag.FlagSet, args []string, out io.Writer) error {
	file := fs.String("f", "", "configuration file (YAML or JSON); - for standard input")
	dry := fs.Bool("dry-run", false, "show the diff without applying")
	if err := parse(c, fs, args); err != nil {
		return err
	}
	if *file == "" {
		return errUsage
	}
	var doc []byte
	var err error
	if *file == "-" {
		doc, err = io.ReadAll(io.LimitReader(os.Stdin, 8<<20))
	} else {
		doc, err = os.ReadFile(*file)
	}
	if err != nil {
		return err
	}
	res, err := c.Apply(ctx, doc, *dry)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}

func cmdKeys(ctx context.Context, c *admin.Client, fs *flag.FlagSet, args []string, out io.Writer) error {
	if len(args) == 0 {
		return errUsage
	}
	sub, args := args[0], args[1:]
	tenant := fs.String("tenant", "", "tenant the key belongs to (create)")
	id := fs.String("id", "", "key ID (create; default generated)")
	models := fs.String("models", "", "comma-separated models the key may use (create; default all)")
	if err := parse(c, fs, args); err != nil {
		return err
	}
	switch sub {
	case "create":
		if *tenant == "" {
			return errUsage
		}
		req := admin.KeyRequest{ID: *id, Tenant: *tenant}
		if *models != "" {
			req.Models = strings.Split(*models, ",")
		}
		k, err := c.CreateKey(ctx, req)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "id:     %s\ntenant: %s\nkey:    %s\n(the key is shown only now; store it safely)\n", k.ID, k.Tenant, k.Key)
		return nil
	case "list":
		keys, err := c.ListKeys(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tTENANT\tMODELS\tDISABLED\tEXPIRES\tHASH")
		for _, k := range keys {
			exp := "-"
			if k.ExpiresAt != nil {
				exp = k.ExpiresAt.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%s\n", k.ID, k.Tenant, strings.Join(k.Models, ","), k.Disabled, exp, k.HashPrefix)
		}
		return tw.Flush()
	case "revoke":
		if fs.NArg() != 1 {
			return errUsage
		}
		k, err := c.RevokeKey(ctx, fs.Arg(0))
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "revoked %s\n", k.ID)
		return nil
	}
	return errUsage
}
