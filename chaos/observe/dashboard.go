package observe

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Dashboard is the part of a Grafana dashboard JSON the checks read.
type Dashboard struct {
	Title  string  `json:"title"`
	Inputs []Input `json:"__inputs"`
	Panels []Panel `json:"panels"`
	// Templating holds the dashboard's variables.
	Templating struct {
		List []Variable `json:"list"`
	} `json:"templating"`
}

// Input is an entry of __inputs, asked for when the dashboard is imported.
type Input struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	PluginID string `json:"pluginId"`
}

// Panel is a dashboard panel; a row panel nests its panels.
type Panel struct {
	ID         int             `json:"id"`
	Title      string          `json:"title"`
	Type       string          `json:"type"`
	Datasource json.RawMessage `json:"datasource"`
	Targets    []Target        `json:"targets"`
	Panels     []Panel         `json:"panels"`
}

// Target is one query of a panel.
type Target struct {
	RefID        string `json:"refId"`
	Expr         string `json:"expr"`
	LegendFormat string `json:"legendFormat"`
}

// Variable is a template variable.
type Variable struct {
	Name       string `json:"name"`
	Type       string `json:"type"`
	IncludeAll bool   `json:"includeAll"`
	AllValue   string `json:"allValue"`
}

// Query is one panel target's expression, named for error messages.
type Query struct {
	Panel, RefID, Expr string
}

// ParseDashboard decodes a Grafana dashboard JSON.
func ParseDashboard(b []byte) (*Dashboard, error) {
	var d Dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("decode dashboard: %w", err)
	}
	return &d, nil
}

// Queries returns every target expression of every panel, rows' nested
// panels included, in dashboard order.
func (d *Dashboard) Queries() []Query {
	var out []Query
	var walk func(ps []Panel)
	walk = func(ps []Panel) {
		for _, p := range ps {
			for _, t := range p.Targets {
				out = append(out, Query{Panel: p.Title, RefID: t.RefID, Expr: t.Expr})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// AllPanels returns every panel, rows' nested panels included.
func (d *Dashboard) AllPanels() []Panel {
	var out []Panel
	var walk func(ps []Panel)
	walk = func(ps []Panel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// grafanaVar matches $name, ${name}, ${name:format} and [[name]].
var grafanaVar = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)(?::[A-Za-z]+)?\}|\$([A-Za-z0-9_]+)|\[\[([A-Za-z0-9_]+)\]\]`)

// Expand substitutes Grafana's variables in expr as a dashboard would with
// every template variable set to "All": values maps built-in variables
// ($__rate_interval, $__interval, $__range) to concrete values; a
// dashboard variable takes values[name] if set, else its allValue (".*"
// when it has none). It fails on a variable it does not know, so a typo
// in a panel is caught.
func (d *Dashboard) Expand(expr string, values map[string]string) (string, error) {
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		all := v.AllValue
		if all == "" {
			all = ".*"
		}
		vars[v.Name] = all
	}
	for k, v := range values {
		vars[k] = v
	}
	var unknown []string
	out := grafanaVar.ReplaceAllStringFunc(expr, func(m string) string {
		sub := grafanaVar.FindStringSubmatch(m)
		name := sub[1] + sub[2] + sub[3]
		v, ok := vars[name]
		if !ok {
			unknown = append(unknown, name)
			return m
		}
		return v
	})
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return "", fmt.Errorf("unknown variables %s in %q", strings.Join(slices.Compact(unknown), ", "), expr)
	}
	return out, nil
}
