package mock

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// maxControlBody bounds a /mock/faults body.
const maxControlBody = 1 << 20

// FaultsResponse is the answer of every /mock/faults call.
type FaultsResponse struct {
	Faults []FaultStatus `json:"faults"`
}

// serveControl serves the unauthenticated control endpoints:
//
//	GET    /mock/faults  list faults
//	POST   /mock/faults  replace one deployment's faults (body: FaultRule)
//	DELETE /mock/faults  clear every fault
//	GET    /mock/stats   Stats
//	POST   /mock/reset   zero the stats (204)
//	POST   /mock/lookup  delivered usage by x-request-id (LookupRequest)
func (r *Region) serveControl(w http.ResponseWriter, req *http.Request) {
	switch req.URL.Path {
	case "/mock/faults":
		switch req.Method {
		case http.MethodGet:
		case http.MethodPost:
			if !r.postFaults(w, req) {
				return
			}
		case http.MethodDelete:
			r.ClearFaults()
		default:
			controlError(w, http.StatusMethodNotAllowed, "method not allowed: use GET, POST or DELETE")
			return
		}
		controlJSON(w, http.StatusOK, FaultsResponse{Faults: r.Faults()})
	case "/mock/stats":
		if req.Method != http.MethodGet {
			controlError(w, http.StatusMethodNotAllowed, "method not allowed: use GET")
			return
		}
		controlJSON(w, http.StatusOK, r.Stats())
	case "/mock/lookup":
		r.serveLookup(w, req)
	case "/mock/reset":
		if req.Method != http.MethodPost {
			controlError(w, http.StatusMethodNotAllowed, "method not allowed: use POST")
			return
		}
		r.Reset()
		w.WriteHeader(http.StatusNoContent)
	default:
		controlError(w, http.StatusNotFound, fmt.Sprintf("no control endpoint %s", req.URL.Path))
	}
}

// postFaults applies a FaultRule body; it answers errors itself.
func (r *Region) postFaults(w http.ResponseWriter, req *http.Request) bool {
	dec := json.NewDecoder(io.LimitReader(req.Body, maxControlBody))
	dec.DisallowUnknownFields()
	var rule FaultRule
	if err := dec.Decode(&rule); err != nil {
		controlError(w, http.StatusBadRequest, fmt.Sprintf("invalid fault rule: %v", err))
		return false
	}
	if rule.Deployment == "" {
		controlError(w, http.StatusBadRequest, `deployment: required (a deployment name or "*")`)
		return false
	}
	if err := r.SetFaults(rule.Deployment, rule.Faults); err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, ErrUnknownDeployment) {
			status = http.StatusNotFound
		}
		controlError(w, status, err.Error())
		return false
	}
	return true
}

func controlJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"message":"marshal failed","type":"server_error","param":null,"code":null}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func controlError(w http.ResponseWriter, status int, msg string) {
	controlJSON(w, status, apiErrorBody{Error: apiErrorDetail{Message: msg, Type: strOrNull("invalid_request_error")}})
}
