package mock

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
)

// DefaultRequestLogSize is how many answered requests a region remembers
// by x-request-id when RegionConfig.RequestLog is zero: about 40 MB at
// most, and more than ten minutes at 400 requests/s.
const DefaultRequestLogSize = 1 << 18

// maxLookupIDs bounds the ids of one /mock/lookup call.
const maxLookupIDs = 100_000

// Usage is what the region delivered for one request carrying an
// x-request-id: the usage it reported, counted only when the answer's last
// byte was written (as in Stats).
type Usage struct {
	Deployment       string `json:"deployment"`
	Status           int    `json:"status"`
	PromptTokens     int64  `json:"prompt_tokens"`
	CompletionTokens int64  `json:"completion_tokens"`
}

// LookupRequest is the body of POST /mock/lookup.
type LookupRequest struct {
	IDs []string `json:"ids"`
}

// LookupResponse answers POST /mock/lookup: for each id the region
// delivered an answer to, one entry per delivery (a gateway that retries
// upstream with the same id can be answered more than once). Ids it never
// answered, or has forgotten, are absent.
type LookupResponse struct {
	Found map[string][]Usage `json:"found"`
}

// requestLog remembers delivered answers by request id, oldest forgotten
// first. Its own lock keeps it off the deployments' locks.
type requestLog struct {
	mu    sync.Mutex
	size  int
	byID  map[string][]Usage
	order []string // ring of ids in arrival order; an id appears once per entry
	next  int
}

func newRequestLog(size int) *requestLog {
	if size <= 0 {
		size = DefaultRequestLogSize
	}
	return &requestLog{size: size, byID: map[string][]Usage{}}
}

// add remembers u for id. Requests without an id are not remembered.
func (l *requestLog) add(id string, u Usage) {
	if id == "" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.order) < l.size {
		l.order = append(l.order, id)
	} else {
		old := l.order[l.next]
		if us := l.byID[old]; len(us) <= 1 {
			delete(l.byID, old)
		} else {
			l.byID[old] = us[1:]
		}
		l.order[l.next] = id
		l.next = (l.next + 1) % l.size
	}
	l.byID[id] = append(l.byID[id], u)
}

// remove forgets the latest entry added for id with this usage (an answer
// whose last write failed after all).
func (l *requestLog) remove(id string, u Usage) {
	if id == "" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	us := l.byID[id]
	for i := len(us) - 1; i >= 0; i-- {
		if us[i] == u {
			us[i].Status = 0 // kept in the ring's count, reported as undelivered
			break
		}
	}
}

func (l *requestLog) clear() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.byID, l.order, l.next = map[string][]Usage{}, nil, 0
}

func (l *requestLog) lookup(ids []string) LookupResponse {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := LookupResponse{Found: map[string][]Usage{}}
	for _, id := range ids {
		var got []Usage
		for _, u := range l.byID[id] {
			if u.Status != 0 {
				got = append(got, u)
			}
		}
		if len(got) > 0 {
			out.Found[id] = got
		}
	}
	return out
}

// Lookup returns the usage the region delivered for each of ids.
func (r *Region) Lookup(ids []string) LookupResponse { return r.reqlog.lookup(ids) }

// serveLookup answers POST /mock/lookup.
func (r *Region) serveLookup(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		controlError(w, http.StatusMethodNotAllowed, "method not allowed: use POST")
		return
	}
	var body LookupRequest
	dec := json.NewDecoder(io.LimitReader(req.Body, 64<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		controlError(w, http.StatusBadRequest, fmt.Sprintf("invalid lookup: %v", err))
		return
	}
	if len(body.IDs) > maxLookupIDs {
		controlError(w, http.StatusBadRequest, fmt.Sprintf("ids: at most %d per call, got %d", maxLookupIDs, len(body.IDs)))
		return
	}
	controlJSON(w, http.StatusOK, r.Lookup(body.IDs))
}

// delivered records a delivered answer's usage in the deployment's stats
// and in the request log.
func (c *call) delivered(prompt, completion int) Usage {
	c.dep.completed(prompt, completion)
	u := Usage{Deployment: c.dep.cfg.Name, Status: http.StatusOK, PromptTokens: int64(prompt), CompletionTokens: int64(completion)}
	c.r.reqlog.add(c.req.Header.Get("x-request-id"), u)
	return u
}

// undelivered takes back what delivered recorded when the answer's last
// write failed.
func (c *call) undelivered(u Usage) {
	c.dep.uncompleted(int(u.PromptTokens), int(u.CompletionTokens))
	c.r.reqlog.remove(c.req.Header.Get("x-request-id"), u)
}
