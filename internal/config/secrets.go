package config

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/url"

	"github.com/deployd/deployd/pkg/notify"
)

// Hints for unknown keys that look like a secret written into the file.

func (n *NotifyTarget) unknownKeyHint(key string) string {
	switch key {
	case "url", "webhook_url":
		return "a webhook URL is a secret and does not belong in the configuration file; name an environment variable with url_env or a file with url_file"
	case "secret", "token", "password":
		return "secrets do not belong in the configuration file; name an environment variable with secret_env or a file with secret_file"
	}
	return ""
}

func (a *Auth) unknownKeyHint(key string) string {
	switch key {
	case "webhook_secret", "webhook_token":
		return "secrets do not belong in the configuration file; name an environment variable with webhook_secret_env or a file with webhook_secret_file"
	}
	return secretKeyHint(key)
}

func (t *Token) unknownKeyHint(key string) string {
	return secretKeyHint(key)
}

func secretKeyHint(key string) string {
	switch key {
	case "token", "secret", "password":
		return "secrets do not belong in the configuration file; name an environment variable with token_env or a file with token_file"
	}
	return ""
}

// Secret reads are all one function, so that they behave alike: a secret
// comes from the environment variable <key>_env or the file <key>_file, a
// file loses its trailing newline (editors and echo add one), and no error
// contains the value.

// secretRef is where one secret lives, as the configuration names it.
type secretRef struct {
	key       string // as written in the file, without _env or _file
	env, file string
	minLen    int // refuse shorter secrets; 0 for none
}

// readSecret reads the secret r names through getenv or readFile.
func readSecret(r secretRef, getenv func(string) string, readFile func(string) ([]byte, error)) ([]byte, error) {
	var secret []byte
	switch {
	case r.env != "" && r.file != "":
		return nil, fmt.Errorf("set %s_env or %s_file, not both", r.key, r.key)
	case r.env != "":
		secret = []byte(getenv(r.env))
		if len(secret) == 0 {
			return nil, fmt.Errorf("%s_env: environment variable %s is empty or unset", r.key, r.env)
		}
	case r.file != "":
		b, err := readFile(r.file)
		if err != nil {
			// A PathError names the file, never its content.
			return nil, fmt.Errorf("read %s_file: %w", r.key, err)
		}
		secret = bytes.TrimRight(b, "\r\n")
		if len(secret) == 0 {
			return nil, fmt.Errorf("%s_file %s is empty", r.key, r.file)
		}
	default:
		return nil, fmt.Errorf("neither %s_env nor %s_file is set", r.key, r.key)
	}
	if len(secret) < r.minLen {
		return nil, fmt.Errorf("secret is shorter than %d bytes; generate a longer one (e.g. openssl rand -hex 32)", r.minLen)
	}
	return secret, nil
}

// ResolveNotifyTargets reads every notification target's URL and optional
// signing secret through getenv or readFile. It refuses missing or empty
// values, URLs that are not http(s) with a host, and secrets under 16
// bytes. Errors name the target and never contain a URL or a secret (a
// Slack URL's path is its credential).
func (c *Config) ResolveNotifyTargets(getenv func(string) string, readFile func(string) ([]byte, error)) ([]notify.Target, error) {
	var errs []error
	out := make([]notify.Target, 0, len(c.Notify))
	for i, n := range c.Notify {
		label := fmt.Sprintf("notify[%d] (%s)", i, n.Name)
		rawURL, err := readSecret(secretRef{key: "url", env: n.URLEnv, file: n.URLFile}, getenv, readFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", label, err))
			continue
		}
		if u, err := url.Parse(string(rawURL)); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("%s: the url is not an http or https URL with a host", label))
			continue
		}
		var secret []byte
		if n.SecretEnv != "" || n.SecretFile != "" {
			secret, err = readSecret(secretRef{key: "secret", env: n.SecretEnv, file: n.SecretFile, minLen: minNotifySecretLength}, getenv, readFile)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", label, err))
				continue
			}
		}
		out = append(out, notify.Target{
			Name: n.Name, Type: n.Type, URL: string(rawURL), Secret: secret,
			Events: append([]string(nil), n.Events...),
		})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// ResolveTokens reads every token's secret through getenv or readFile. It
// refuses missing, empty, short (under 16 bytes) and shared secrets, naming
// the token in each error and never the secret.
func (c *Config) ResolveTokens(getenv func(string) string, readFile func(string) ([]byte, error)) ([]ResolvedToken, error) {
	var errs []error
	out := make([]ResolvedToken, 0, len(c.Auth.Tokens))
	owner := map[string]string{}
	for i, t := range c.Auth.Tokens {
		label := fmt.Sprintf("auth.tokens[%d] (%s)", i, t.Name)
		secret, err := readSecret(secretRef{key: "token", env: t.TokenEnv, file: t.TokenFile, minLen: minTokenLength}, getenv, readFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", label, err))
			continue
		}
		if first, dup := owner[string(secret)]; dup {
			errs = append(errs, fmt.Errorf("%s: has the same secret as %s; give every token its own", label, first))
			continue
		}
		owner[string(secret)] = label
		out = append(out, ResolvedToken{Name: t.Name, Role: t.Role, Secret: string(secret)})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

func (c *Config) webhookConfigured() bool {
	return c.Auth.WebhookSecretEnv != "" || c.Auth.WebhookSecretFile != ""
}

// ResolveWebhookSecret reads the webhook's HMAC secret through getenv or
// readFile; nil, nil when none is configured. It refuses an empty, unreadable
// or short (under 16 bytes) secret, and one equal to an API token's: a
// signing secret lives in CI where a token would be worth more, so one leak
// must not give away both. Tokens are resolved to compare, so their errors
// are returned too. Errors never contain a secret.
func (c *Config) ResolveWebhookSecret(getenv func(string) string, readFile func(string) ([]byte, error)) ([]byte, error) {
	if !c.webhookConfigured() {
		return nil, nil
	}
	secret, err := readSecret(secretRef{key: "webhook_secret", env: c.Auth.WebhookSecretEnv, file: c.Auth.WebhookSecretFile, minLen: minWebhookSecretLength}, getenv, readFile)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	tokens, err := c.ResolveTokens(getenv, readFile)
	if err != nil {
		return nil, fmt.Errorf("resolve tokens to compare with the webhook secret: %w", err)
	}
	for i, t := range tokens {
		if subtle.ConstantTimeCompare([]byte(t.Secret), secret) == 1 {
			return nil, fmt.Errorf("auth: webhook secret is the same as the secret of auth.tokens[%d] (%s); give the webhook its own", i, t.Name)
		}
	}
	return secret, nil
}
