package admin

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Provider secrets given to the admin API as a literal (api_key_value) are
// stored as "enc:" + base64(nonce | AES-256-GCM ciphertext) under the
// cluster key. The plaintext never enters the raft log. This file is all a
// node needs to resolve enc: references on its request path (Resolver).

// EncPrefix starts an encrypted secret reference.
const EncPrefix = "enc:"

// Errors of the secret helpers. Their messages never contain a secret or
// a ciphertext.
var (
	// ErrNoClusterKey: an enc: value must be encrypted or decrypted but no
	// cluster key is configured.
	ErrNoClusterKey = errors.New("no cluster key configured (" + ClusterKeyEnv + ")")
	// ErrBadSecret: the reference is not a well-formed enc: value, or it
	// does not decrypt under the cluster key (wrong key or tampered).
	ErrBadSecret = errors.New("encrypted secret does not decrypt")
)

func newGCM(key []byte) (cipher.AEAD, error) {
	if len(key) == 0 {
		return nil, ErrNoClusterKey
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("%w: the cluster key must be 32 bytes, got %d", ErrInvalidConfig, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return cipher.NewGCM(block)
}

// Encrypt seals plaintext under the 32-byte cluster key and returns the
// stored reference "enc:<base64(nonce|ciphertext)>". Every call uses a new
// random nonce, so equal secrets encrypt differently.
func Encrypt(key []byte, plaintext string) (string, error) {
	gcm, err := newGCM(key)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, gcm.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("encrypt: %w", err)
	}
	sealed := gcm.Seal(nonce, nonce, []byte(plaintext), nil)
	return EncPrefix + base64.StdEncoding.EncodeToString(sealed), nil
}

// Decrypt opens a reference made by Encrypt with the same key.
func Decrypt(key []byte, ref string) (string, error) {
	gcm, err := newGCM(key)
	if err != nil {
		return "", err
	}
	b64, ok := strings.CutPrefix(ref, EncPrefix)
	if !ok {
		return "", fmt.Errorf("%w: not an %s reference", ErrBadSecret, EncPrefix)
	}
	sealed, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(sealed) < gcm.NonceSize()+gcm.Overhead() {
		return "", fmt.Errorf("%w: malformed", ErrBadSecret)
	}
	n := gcm.NonceSize()
	plain, err := gcm.Open(nil, sealed[:n], sealed[n:], nil)
	if err != nil {
		return "", ErrBadSecret
	}
	return string(plain), nil
}

// Resolver returns a secret resolver (the shape of router.SecretResolver)
// that decrypts enc: references with key and hands every other reference
// to next (for example router.EnvResolver). A nil next refuses them.
func Resolver(key []byte, next func(ref string) (string, error)) func(ref string) (string, error) {
	return func(ref string) (string, error) {
		if strings.HasPrefix(ref, EncPrefix) {
			return Decrypt(key, ref)
		}
		if next == nil {
			return "", fmt.Errorf("%w: unsupported secret reference", ErrBadSecret)
		}
		return next(ref)
	}
}
