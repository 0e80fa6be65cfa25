package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/sluicehq/sluice/admin"
	"github.com/sluicehq/sluice/quota/ledger"
)

const usageUsage = "sluice usage [--tenant T] [--key K] [--model M] [--deployment D] [--region R] [--from -1h] [--to now] [--group-by tenant,model] [--bucket minute|hour|day] [--csv]"

// cmdUsage prints the usage ledger as an aligned table (or CSV).
func cmdUsage(ctx context.Context, c *admin.Client, fs *flag.FlagSet, args []string, out io.Writer) error {
	var q admin.UsageQuery
	fs.StringVar(&q.Tenant, "tenant", "", "only this tenant")
	fs.StringVar(&q.Key, "key", "", "only this key ID")
	fs.StringVar(&q.Model, "model", "", "only this model")
	fs.StringVar(&q.Deployment, "deployment", "", "only this deployment")
	fs.StringVar(&q.Region, "region", "", "only this region")
	fs.StringVar(&q.From, "from", "-24h", "start: RFC 3339 or relative (-1h, -7d); empty for all")
	fs.StringVar(&q.To, "to", "", "end: RFC 3339, relative or now; empty for no end")
	groupBy := fs.String("group-by", "", "comma list of tenant,key,model,deployment,region,class,cached")
	fs.StringVar(&q.Bucket, "bucket", "", "time bucket: minute, hour or day")
	asCSV := fs.Bool("csv", false, "print CSV instead of a table")
	if err := parse(c, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return errUsage
	}
	if *groupBy != "" {
		for _, f := range strings.Split(*groupBy, ",") {
			q.GroupBy = append(q.GroupBy, strings.TrimSpace(f))
		}
	}
	if *asCSV {
		return c.UsageCSV(ctx, q, out)
	}
	rep, err := c.Usage(ctx, q)
	if err != nil {
		return err
	}
	g := ledger.GroupBy{Fields: rep.GroupBy, Bucket: rep.Bucket}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	cols := admin.UsageColumns(g)
	for i := range cols {
		cols[i] = strings.ToUpper(cols[i])
	}
	fmt.Fprintln(tw, strings.Join(cols, "\t"))
	for _, r := range rep.Rows {
		fmt.Fprintln(tw, strings.Join(admin.UsageCells(g, r), "\t"))
	}
	if len(cols) == 4 { // nothing grouped: the one row is the total
		return tw.Flush()
	}
	total := make([]string, len(cols)-4)
	total[0] = "TOTAL"
	t := rep.Total
	total = append(total, strconv.FormatInt(t.Requests, 10), strconv.FormatInt(t.PromptTokens, 10),
		strconv.FormatInt(t.CompletionTokens, 10), strconv.FormatInt(t.Errors, 10))
	fmt.Fprintln(tw, strings.Join(total, "\t"))
	return tw.Flush()
}
