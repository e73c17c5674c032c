package github

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

// App identifies a GitHub App installation: the better credential for
// organisations (short-lived tokens, not tied to a person).
type App struct {
	ID             int64
	InstallationID int64
	PrivateKey     secret.Value // PEM, PKCS#1 or PKCS#8
}

// InstallationToken mints an installation access token (valid one hour)
// with a JWT signed by the app's private key (RS256), as GitHub documents.
// The JWT is a credential: the API URL is checked (https only) before any
// request is made. o.Token is not used.
func InstallationToken(ctx context.Context, o Options, app App) (secret.Value, error) {
	api, err := CanonicalAPIURL(o.APIURL, o.TestOnlyAllowLoopbackHTTP)
	if err != nil {
		return secret.Value{}, err
	}
	key, err := parseKey(app.PrivateKey)
	if err != nil {
		return secret.Value{}, err
	}
	hc := o.httpClient()
	if o.HTTP == nil {
		hc.Timeout = 30 * time.Second
	}
	u := fmt.Sprintf("%sapp/installations/%d/access_tokens", api, app.InstallationID)
	st := &attemptState{}
	var tok secret.Value
	err = mintPolicy(o, app).do(ctx, st, func() error {
		var err error
		tok, err = mintOnce(ctx, hc, u, app.ID, key, st)
		return err
	})
	return tok, err
}

// mintPolicy is GitHub's policy (see policy.go) for minting a token.
func mintPolicy(o Options, app App) policyOptions {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return policyOptions{op: "GitHub App token", attempts: 5, backoff: time.Second, max: time.Minute, log: log,
		refused: func(status int, err error) error {
			switch status {
			case 401:
				return errors.New("GitHub App token: the app id or private key was rejected")
			case 404:
				return fmt.Errorf("GitHub App token: installation %d not found for app %d", app.InstallationID, app.ID)
			}
			if status >= 0 && status != 200 && status != 201 {
				return fmt.Errorf("GitHub App token: %w", err)
			}
			return err
		}}
}

// mintOnce makes one request and records its answer in st.
// A JWT is signed per attempt: rate-limit waits can outlast one. A
// failure before any request (status -1) is not retried.
func mintOnce(ctx context.Context, hc *http.Client, u string, appID int64, key *rsa.PrivateKey, st *attemptState) (secret.Value, error) {
	*st = attemptState{cutoff: st.cutoff, secondary: st.secondary, status: -1}
	jwt, err := appJWT(appID, key, time.Now())
	if err != nil {
		return secret.Value{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return secret.Value{}, err
	}
	req.Header.Set("Authorization", "Bearer "+jwt)
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	resp, err := hc.Do(req)
	if err != nil {
		st.status, st.err = 0, err
		return secret.Value{}, st.err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var body struct {
		Token   string `json:"token"`
		Message string `json:"message"`
	}
	jerr := json.Unmarshal(b, &body)
	st.status, st.header, st.msg = resp.StatusCode, resp.Header, body.Message
	switch {
	case resp.StatusCode != 201 && resp.StatusCode != 200:
		st.err = fmt.Errorf("HTTP %d", resp.StatusCode)
		return secret.Value{}, st.err
	case jerr != nil || body.Token == "":
		return secret.Value{}, errors.New("GitHub App token: no token in GitHub's answer")
	}
	return secret.New(body.Token), nil
}

func parseKey(pemKey secret.Value) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode([]byte(strings.TrimSpace(strings.ReplaceAll(pemKey.Reveal(), `\n`, "\n"))))
	if block == nil {
		return nil, errors.New("github_app_private_key is not a PEM private key")
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, errors.New("github_app_private_key is not an RSA private key")
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New("github_app_private_key is not an RSA private key")
	}
	return rk, nil
}

// appJWT is the app's JSON Web Token: issued a minute in the past (clock
// drift), valid nine minutes (GitHub allows ten).
func appJWT(appID int64, key *rsa.PrivateKey, now time.Time) (string, error) {
	enc := base64.RawURLEncoding
	header := enc.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT"}`))
	claims, _ := json.Marshal(map[string]any{"iat": now.Add(-time.Minute).Unix(), "exp": now.Add(9 * time.Minute).Unix(), "iss": strconv.FormatInt(appID, 10)})
	signing := header + "." + enc.EncodeToString(claims)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		return "", err
	}
	return signing + "." + enc.EncodeToString(sig), nil
}
