package admin

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/sluicehq/sluice/quota/ledger"
)

// UsageReader answers usage queries from the replicated ledger
// (*ledger.Section satisfies it). The node passes one in Config.Usage;
// GET /admin/v1/usage answers 501 without it.
type UsageReader interface {
	Query(f ledger.Filter, g ledger.GroupBy) (ledger.Result, error)
}

// UsageQuery is a usage query as the API takes it (query parameters).
type UsageQuery struct {
	// Tenant, Key, Model, Deployment and Region filter the rows; empty
	// matches everything.
	Tenant, Key, Model, Deployment, Region string
	// From and To bound the time: RFC 3339 ("2026-11-01T00:00:00Z") or
	// relative to now ("-1h", "-30m", "-7d", "now"). Empty: unbounded.
	From, To string
	// GroupBy lists fields (tenant, key, model, deployment, region, class,
	// cached); Bucket is "", minute, hour or day.
	GroupBy []string
	Bucket  string
}

// Values encodes q as query parameters.
func (q UsageQuery) Values() url.Values {
	v := url.Values{}
	set := func(k, val string) {
		if val != "" {
			v.Set(k, val)
		}
	}
	set("tenant", q.Tenant)
	set("key", q.Key)
	set("model", q.Model)
	set("deployment", q.Deployment)
	set("region", q.Region)
	set("from", q.From)
	set("to", q.To)
	set("group_by", strings.Join(q.GroupBy, ","))
	set("bucket", q.Bucket)
	return v
}

// UsageReport is the JSON answer of GET /admin/v1/usage.
type UsageReport struct {
	From    time.Time         `json:"from,omitzero"`
	To      time.Time         `json:"to,omitzero"`
	GroupBy []string          `json:"group_by"`
	Bucket  string            `json:"bucket,omitempty"`
	Rows    []ledger.QueryRow `json:"rows"`
	Total   ledger.Counts     `json:"total"`
}

// Output formats.
const (
	usageJSON = "json"
	usageCSV  = "csv"
)

// usageParams is a parsed usage request.
type usageParams struct {
	filter ledger.Filter
	group  ledger.GroupBy
	format string
}

// maxUsageParam bounds each query parameter: names and times are short.
const maxUsageParam = 256

// parseUsageQuery parses the query parameters of GET /admin/v1/usage;
// accept is the Accept header (text/csv selects CSV unless format says
// otherwise). Errors are 400s naming the parameter.
func parseUsageQuery(q url.Values, accept string, now time.Time) (usageParams, error) {
	known := []string{"tenant", "key", "model", "deployment", "region", "from", "to", "group_by", "bucket", "format"}
	for k, vs := range q {
		if !slices.Contains(known, k) {
			return usageParams{}, invalidField(k, "unknown parameter (use %s)", strings.Join(known, ", "))
		}
		if len(vs) > 1 {
			return usageParams{}, invalidField(k, "given more than once")
		}
		if len(vs[0]) > maxUsageParam {
			return usageParams{}, invalidField(k, "longer than %d bytes", maxUsageParam)
		}
	}
	p := usageParams{filter: ledger.Filter{
		Tenant: q.Get("tenant"), Key: q.Get("key"), Model: q.Get("model"),
		Deployment: q.Get("deployment"), Region: q.Get("region"),
	}}
	var err error
	if p.filter.From, err = parseUsageTime(q.Get("from"), now); err != nil {
		return usageParams{}, invalidField("from", "%v", err)
	}
	if p.filter.To, err = parseUsageTime(q.Get("to"), now); err != nil {
		return usageParams{}, invalidField("to", "%v", err)
	}
	if !p.filter.From.IsZero() && !p.filter.To.IsZero() && !p.filter.From.Before(p.filter.To) {
		return usageParams{}, invalidField("to", "must be after from")
	}
	p.group.Bucket = q.Get("bucket")
	if gb := q.Get("group_by"); gb != "" {
		for _, f := range strings.Split(gb, ",") {
			f = strings.TrimSpace(f)
			if b, ok := strings.CutPrefix(f, "bucket="); ok {
				if p.group.Bucket != "" && p.group.Bucket != b {
					return usageParams{}, invalidField("group_by", "bucket given twice")
				}
				p.group.Bucket = b
				continue
			}
			if f == "" || slices.Contains(p.group.Fields, f) {
				return usageParams{}, invalidField("group_by", "empty or repeated field %q", f)
			}
			if !slices.Contains(ledger.Fields, f) {
				return usageParams{}, invalidField("group_by", "unknown field %q (use %s, and bucket=minute|hour|day)", f, strings.Join(ledger.Fields, ","))
			}
			p.group.Fields = append(p.group.Fields, f)
		}
	}
	switch p.group.Bucket {
	case ledger.BucketNone, ledger.BucketMinute, ledger.BucketHour, ledger.BucketDay:
	default:
		return usageParams{}, invalidField("bucket", "must be minute, hour or day")
	}
	switch f := q.Get("format"); f {
	case "":
		p.format = usageJSON
		if strings.Contains(accept, "text/csv") {
			p.format = usageCSV
		}
	case usageJSON, usageCSV:
		p.format = f
	default:
		return usageParams{}, invalidField("format", "must be json or csv")
	}
	return p, nil
}

// parseUsageTime reads RFC 3339, "now", or a signed duration relative to
// now ("-1h30m", "-7d", "+15m"); empty is the zero time (unbounded).
func parseUsageTime(s string, now time.Time) (time.Time, error) {
	switch {
	case s == "":
		return time.Time{}, nil
	case s == "now":
		return now, nil
	case s[0] == '-' || s[0] == '+':
		d, err := parseRelative(s[1:])
		if err != nil {
			return time.Time{}, err
		}
		if s[0] == '-' {
			d = -d
		}
		return now.Add(d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("want RFC 3339 (2026-11-01T00:00:00Z) or relative (-1h, -7d), got %q", s)
	}
	return t, nil
}

// maxRelative bounds relative times: the ledger keeps 35 days.
const maxRelative = 366 * 24 * time.Hour

// parseRelative parses a Go duration, also accepting a whole number of
// days ("7d").
func parseRelative(s string) (time.Duration, error) {
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 || n > 366 {
			return 0, fmt.Errorf("bad relative time %q: days must be 0-366", s)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil || d < 0 {
			return 0, fmt.Errorf("bad relative time %q (use -1h, -30m, -7d)", s)
		}
	}
	if d > maxRelative {
		return 0, fmt.Errorf("relative time %q is more than a year", s)
	}
	return d, nil
}

func (s *Server) usage(c echo.Context) error {
	if s.cfg.Usage == nil {
		return newError(http.StatusNotImplemented, CodeNotImplemented, "this node has no usage ledger (standalone mode)")
	}
	p, err := parseUsageQuery(c.QueryParams(), c.Request().Header.Get(echo.HeaderAccept), time.Now().UTC())
	if err != nil {
		return err
	}
	res, err := s.cfg.Usage.Query(p.filter, p.group)
	if err != nil {
		return newError(http.StatusBadRequest, CodeInvalid, "%v", err)
	}
	if p.format == usageCSV {
		return writeUsageCSV(c, p.group, res)
	}
	fields := p.group.Fields
	if fields == nil {
		fields = []string{}
	}
	return c.JSON(http.StatusOK, UsageReport{From: p.filter.From, To: p.filter.To, GroupBy: fields,
		Bucket: p.group.Bucket, Rows: res.Rows, Total: res.Total})
}

// UsageColumns returns the column names of a usage table: the bucket when
// grouped by time, the grouped fields, then the counts.
func UsageColumns(g ledger.GroupBy) []string {
	var cols []string
	if g.Bucket != ledger.BucketNone {
		cols = append(cols, "bucket")
	}
	cols = append(cols, g.Fields...)
	return append(cols, "requests", "prompt_tokens", "completion_tokens", "errors")
}

// UsageCells returns one row's cells in UsageColumns order.
func UsageCells(g ledger.GroupBy, r ledger.QueryRow) []string {
	var out []string
	if g.Bucket != ledger.BucketNone {
		out = append(out, r.Bucket.UTC().Format(time.RFC3339))
	}
	for _, f := range g.Fields {
		switch f {
		case ledger.FieldTenant:
			out = append(out, r.Tenant)
		case ledger.FieldKey:
			out = append(out, r.Key)
		case ledger.FieldModel:
			out = append(out, r.Model)
		case ledger.FieldDeployment:
			out = append(out, r.Deployment)
		case ledger.FieldRegion:
			out = append(out, r.Region)
		case ledger.FieldClass:
			out = append(out, r.Class)
		case ledger.FieldCached:
			out = append(out, strconv.FormatBool(r.Cached))
		}
	}
	return append(out, strconv.FormatInt(r.Requests, 10), strconv.FormatInt(r.PromptTokens, 10),
		strconv.FormatInt(r.CompletionTokens, 10), strconv.FormatInt(r.Errors, 10))
}

func writeUsageCSV(c echo.Context, g ledger.GroupBy, res ledger.Result) error {
	w := c.Response()
	w.Header().Set(echo.HeaderContentType, "text/csv; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	cw := csv.NewWriter(w)
	_ = cw.Write(UsageColumns(g))
	for _, r := range res.Rows {
		_ = cw.Write(UsageCells(g, r))
	}
	cw.Flush()
	return cw.Error()
}

// Usage queries the usage ledger (GET /admin/v1/usage).
func (c *Client) Usage(ctx context.Context, q UsageQuery) (*UsageReport, error) {
	var out UsageReport
	if err := c.do(ctx, http.MethodGet, apiPrefix+"/usage", q.Values(), nil, "", &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// UsageCSV writes the usage ledger's answer as CSV to w.
func (c *Client) UsageCSV(ctx context.Context, q UsageQuery, w io.Writer) error {
	v := q.Values()
	v.Set("format", usageCSV)
	return c.do(ctx, http.MethodGet, apiPrefix+"/usage", v, nil, "", w)
}
