package github

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/runpod-workers/worker-github_runner/internal/secret"
)

func TestAppJWT(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	jwt, err := appJWT(123, key, now)
	if err != nil {
		t.Fatal(err)
	}
	if iss, err := VerifyAppJWT(jwt, &key.PublicKey, now); err != nil || iss != "123" {
		t.Fatalf("verify: %q %v", iss, err)
	}
	if _, err := VerifyAppJWT(jwt, &key.PublicKey, now.Add(20*time.Minute)); err == nil {
		t.Error("an expired JWT verified")
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	if _, err := VerifyAppJWT(jwt, &other.PublicKey, now); err == nil {
		t.Error("a JWT verified with the wrong key")
	}
}

func TestParseKey(t *testing.T) {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	pkcs1 := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	p8, _ := x509.MarshalPKCS8PrivateKey(key)
	pkcs8 := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}))
	// Environment variables often carry the key with literal \n.
	escaped := strings.ReplaceAll(pkcs1, "\n", `\n`)
	for name, k := range map[string]string{"pkcs1": pkcs1, "pkcs8": pkcs8, "escaped newlines": escaped} {
		if got, err := parseKey(secret.New(k)); err != nil || got.N.Cmp(key.N) != 0 {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := parseKey(secret.New("not a key")); err == nil || strings.Contains(err.Error(), "not a key") {
		t.Errorf("bad key: %v (the error must not echo the key)", err)
	}
}
