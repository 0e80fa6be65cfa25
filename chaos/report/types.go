package report

import "time"

// Run is everything one chaos run measured. Durations are nanoseconds in
// JSON (fields ending in _ns); times of day are RFC 3339.
type Run struct {
	Name        string             `json:"name"` // schedule name, e.g. "ci" or "long"
	Seed        int64              `json:"seed"`
	Started     time.Time          `json:"started"`
	Duration    time.Duration      `json:"duration_ns"`
	Nodes       []string           `json:"nodes"`
	Deployments []Deployment       `json:"deployments"`
	Faults      []Fault            `json:"faults"`
	Windows     []Window           `json:"windows"` // per deployment, as the mock provider counted
	Shares      []ShareSample      `json:"shares"`  // each node's share of each deployment over time
	Tenants     []TenantStats      `json:"tenants"`
	Invariants  []Invariant        `json:"invariants"`
	Figures     map[string]float64 `json:"figures"` // other measured figures, e.g. "utilisation_calm"
	Notes       []string           `json:"notes"`   // e.g. "partition skipped: needs root"
}

// Deployment is one provider deployment and its quota.
type Deployment struct {
	Name   string `json:"name"`
	Region string `json:"region"`
	RPM    int64  `json:"rpm"`
	TPM    int64  `json:"tpm"`
}

// Fault is one injected fault.
type Fault struct {
	At     time.Duration `json:"at_ns"`    // since Run.Started
	Until  time.Duration `json:"until_ns"` // 0 for an instant fault (a kill)
	Kind   string        `json:"kind"`     // sigkill, leader-kill, pause, partition, netem, region-down, 429-storm, rolling-restart, restart
	Target string        `json:"target"`   // node or region name
	Detail string        `json:"detail,omitempty"`
}

// Window is one deployment's traffic in one window as the mock counted it.
type Window struct {
	Deployment    string        `json:"deployment"`
	Start         time.Duration `json:"start_ns"` // since Run.Started
	Length        time.Duration `json:"length_ns"`
	Requests      int64         `json:"requests"`
	Tokens        int64         `json:"tokens"`
	LimitRequests int64         `json:"limit_requests"` // RPM scaled to Length
	LimitTokens   int64         `json:"limit_tokens"`   // TPM scaled to Length
}

// ShareSample is one node's share of one deployment at one instant.
type ShareSample struct {
	At         time.Duration `json:"at_ns"`
	Node       string        `json:"node"`
	Deployment string        `json:"deployment"`
	Tokens     float64       `json:"tokens_per_min"`
	Requests   float64       `json:"requests_per_min"`
}

// TenantStats is what one tenant's clients saw.
type TenantStats struct {
	Tenant  string        `json:"tenant"`
	Class   string        `json:"class"` // normal, batch, abusive
	Sent    int64         `json:"sent"`
	OK      int64         `json:"ok"`
	Refused int64         `json:"refused"` // clean 429/503 answers
	Failed  int64         `json:"failed"`  // other errors
	Hung    int64         `json:"hung"`    // no answer by the deadline
	P50     time.Duration `json:"p50_ns"`
	P99     time.Duration `json:"p99_ns"`
}

// Invariant is one checked property and its verdict.
type Invariant struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"` // the figures behind the verdict
}
