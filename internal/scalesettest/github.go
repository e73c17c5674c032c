package scalesettest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// adminKey signs the fake's admin tokens.
var adminKey = []byte("scalesettest-admin-token-key")

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// serve routes a request: /_fake/ for runners, /pipelines/ for the
// Actions service, the rest is the GitHub API (at /api/v3/ or /).
func (f *Fake) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	path := r.URL.Path
	switch {
	case strings.HasPrefix(path, "/_fake/runners/"):
		f.runnerCall(w, r, strings.Split(strings.Trim(strings.TrimPrefix(path, "/_fake/runners/"), "/"), "/"), body)
	case strings.HasPrefix(path, servicePrefix):
		f.service(w, r, strings.Trim(strings.TrimPrefix(path, servicePrefix), "/"), body)
	default:
		f.github(w, r, strings.TrimPrefix(path, "/api/v3"), body)
	}
}

// github serves the GitHub API calls the scale-set client makes, and the
// REST runner list and removal (rest.go).
func (f *Fake) github(w http.ResponseWriter, r *http.Request, path string, body []byte) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case r.Method == "POST" && len(parts) == 4 && parts[0] == "app" && parts[1] == "installations" && parts[3] == "access_tokens":
		f.accessToken(w, r, parts[2])
	case r.Method == "POST" && strings.HasSuffix(path, "/actions/runners/registration-token"):
		f.registrationToken(w, r, strings.TrimSuffix(strings.Trim(path, "/"), "/actions/runners/registration-token"))
	case r.Method == "POST" && path == "/actions/runner-registration":
		f.runnerRegistration(w, r, body)
	case restPath(parts):
		rest, _ := restScope(parts)
		f.restRunners(w, r, rest)
	default:
		writeJSON(w, 404, map[string]string{"message": "Not Found"})
	}
}

func (f *Fake) accessToken(w http.ResponseWriter, r *http.Request, installation string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if st := f.fault(OpAccessToken); st != 0 {
		injected(w, st)
		return
	}
	raw := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	var claims jwt.RegisteredClaims
	_, err := jwt.ParseWithClaims(raw, &claims, func(t *jwt.Token) (any, error) {
		iss, _ := t.Claims.GetIssuer()
		a, ok := f.apps[iss]
		if !ok {
			return nil, fmt.Errorf("unknown app %q", iss)
		}
		if strconv.FormatInt(a.installation, 10) != installation {
			return nil, fmt.Errorf("app %q is not installation %s", iss, installation)
		}
		return a.key, nil
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuedAt())
	if err != nil || claims.ExpiresAt == nil || claims.IssuedAt == nil || claims.ExpiresAt.Sub(claims.IssuedAt.Time) > 10*time.Minute {
		writeJSON(w, 401, map[string]string{"message": "A JSON web token could not be decoded"})
		return
	}
	tok := "ghs_" + randomHex(18)
	f.tokens[tok] = time.Now().Add(time.Hour)
	f.issued = append(f.issued, tok)
	writeJSON(w, 201, map[string]any{"token": tok, "expires_at": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)})
}

func (f *Fake) registrationToken(w http.ResponseWriter, r *http.Request, scope string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if st := f.fault(OpRegistrationToken); st != 0 {
		injected(w, st)
		return
	}
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if exp, ok := f.tokens[tok]; !(tok == f.PAT && f.PAT != "" || ok && time.Now().Before(exp) && strings.HasPrefix(tok, "ghs_")) {
		writeJSON(w, 401, map[string]string{"message": "Bad credentials"})
		return
	}
	reg := "AREG" + randomHex(16)
	f.tokens[reg] = time.Now().Add(time.Hour)
	f.issued = append(f.issued, reg)
	writeJSON(w, 201, map[string]any{"token": reg, "expires_at": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)})
}

func (f *Fake) runnerRegistration(w http.ResponseWriter, r *http.Request, body []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if st := f.fault(OpRunnerRegistration); st != 0 {
		injected(w, st)
		return
	}
	var req struct {
		URL         string `json:"url"`
		RunnerEvent string `json:"runner_event"`
	}
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "RemoteAuth ")
	exp, ok := f.tokens[tok]
	if !ok || !strings.HasPrefix(tok, "AREG") || time.Now().After(exp) {
		writeJSON(w, 401, map[string]string{"message": "Bad credentials"})
		return
	}
	if json.Unmarshal(body, &req) != nil || req.RunnerEvent != "register" || !strings.HasPrefix(req.URL, f.URL+"/") {
		writeJSON(w, 400, map[string]string{"message": "url of this server and runner_event register are required"})
		return
	}
	admin, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(f.AdminTokenTTL)),
		Subject:   "admin",
		ID:        randomHex(8),
	}).SignedString(adminKey)
	f.issued = append(f.issued, admin)
	writeJSON(w, 200, map[string]string{"url": f.URL + servicePrefix, "token": admin})
}

// adminOK reports whether the request carries a valid admin token.
func adminOK(r *http.Request) bool {
	raw := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	_, err := jwt.Parse(raw, func(*jwt.Token) (any, error) { return adminKey, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired())
	return err == nil
}
