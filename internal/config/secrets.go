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

// ResolveNotifyTargets reads every notification target's URL and optional
// signing secret through getenv or readFile. It refuses missing or empty
// values, URLs that are not http(s) with a host, and secrets under 16
// bytes. Errors name the target and never contain a URL or a secret (a
// Slack URL's path is its credential). Files lose their trailing newline.
func (c *Config) ResolveNotifyTargets(getenv func(string) string, readFile func(string) ([]byte, error)) ([]notify.Target, error) {
	var errs []error
	out := make([]notify.Target, 0, len(c.Notify))
	for i, n := range c.Notify {
		label := fmt.Sprintf("notify[%d] (%s)", i, n.Name)
		rawURL, err := readSecretValue(getenv, readFile, n.URLEnv, n.URLFile, "url")
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
			secret, err = readSecretValue(getenv, readFile, n.SecretEnv, n.SecretFile, "secret")
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", label, err))
				continue
			}
			if len(secret) < minNotifySecretLength {
				errs = append(errs, fmt.Errorf("%s: secret is shorter than %d bytes; generate a longer one (e.g. openssl rand -hex 32)", label, minNotifySecretLength))
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

// readSecretValue reads what key_env or key_file names; exactly one is
// expected to be set. Errors never contain the value.
func readSecretValue(getenv func(string) string, readFile func(string) ([]byte, error), env, file, key string) ([]byte, error) {
	switch {
	case env != "" && file != "":
		return nil, fmt.Errorf("set %s_env or %s_file, not both", key, key)
	case env != "":
		v := getenv(env)
		if v == "" {
			return nil, fmt.Errorf("%s_env: environment variable %s is empty or unset", key, env)
		}
		return []byte(v), nil
	case file != "":
		b, err := readFile(file)
		if err != nil {
			// A PathError names the file, never its content.
			return nil, fmt.Errorf("read %s_file: %w", key, err)
		}
		b = bytes.TrimRight(b, "\r\n")
		if len(b) == 0 {
			return nil, fmt.Errorf("%s_file %s is empty", key, file)
		}
		return b, nil
	}
	return nil, fmt.Errorf("neither %s_env nor %s_file is set", key, key)
}

// ResolveTokens reads every token's secret through getenv or readFile. It
// refuses missing, empty, short (under 16 bytes) and shared secrets, naming
// the token in each error and never the secret. A token file's trailing
// newline is dropped, since editors and `echo` add one.
func (c *Config) ResolveTokens(getenv func(string) string, readFile func(string) ([]byte, error)) ([]ResolvedToken, error) {
	var errs []error
	out := make([]ResolvedToken, 0, len(c.Auth.Tokens))
	owner := map[string]string{}
	for i, t := range c.Auth.Tokens {
		label := fmt.Sprintf("auth.tokens[%d] (%s)", i, t.Name)
		var secret string
		switch {
		case t.TokenEnv != "":
			secret = getenv(t.TokenEnv)
			if secret == "" {
				errs = append(errs, fmt.Errorf("%s: environment variable %s is empty or unset", label, t.TokenEnv))
				continue
			}
		case t.TokenFile != "":
			b, err := readFile(t.TokenFile)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: read token_file: %w", label, err))
				continue
			}
			secret = string(bytes.TrimRight(b, "\r\n"))
			if secret == "" {
				errs = append(errs, fmt.Errorf("%s: token_file %s is empty", label, t.TokenFile))
				continue
			}
		default:
			errs = append(errs, fmt.Errorf("%s: neither token_env nor token_file is set", label))
			continue
		}
		if len(secret) < minTokenLength {
			errs = append(errs, fmt.Errorf("%s: secret is shorter than %d bytes; generate a longer one (e.g. openssl rand -hex 32)", label, minTokenLength))
			continue
		}
		if first, dup := owner[secret]; dup {
			errs = append(errs, fmt.Errorf("%s: has the same secret as %s; give every token its own", label, first))
			continue
		}
		owner[secret] = label
		out = append(out, ResolvedToken{Name: t.Name, Role: t.Role, Secret: secret})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// Limits on the webhook secret.
const minWebhookSecretLength = 16

func (c *Config) webhookConfigured() bool {
	return c.Auth.WebhookSecretEnv != "" || c.Auth.WebhookSecretFile != ""
}

// ResolveWebhookSecret reads the webhook's HMAC secret through getenv or
// readFile; nil, nil when none is configured. It refuses an empty, unreadable
// or short (under 16 bytes) secret, and one equal to an API token's: a
// signing secret lives in CI where a token would be worth more, so one leak
// must not give away both. Tokens are resolved to compare, so their errors
// are returned too. Errors never contain a secret. A file's trailing newline
// is dropped, as for token files.
func (c *Config) ResolveWebhookSecret(getenv func(string) string, readFile func(string) ([]byte, error)) ([]byte, error) {
	var secret []byte
	switch a := c.Auth; {
	case a.WebhookSecretEnv != "" && a.WebhookSecretFile != "":
		return nil, errors.New("auth: set webhook_secret_env or webhook_secret_file, not both")
	case a.WebhookSecretEnv != "":
		v := getenv(a.WebhookSecretEnv)
		if v == "" {
			return nil, fmt.Errorf("auth.webhook_secret_env: environment variable %s is empty or unset", a.WebhookSecretEnv)
		}
		secret = []byte(v)
	case a.WebhookSecretFile != "":
		b, err := readFile(a.WebhookSecretFile)
		if err != nil {
			return nil, fmt.Errorf("auth.webhook_secret_file: %w", err)
		}
		secret = bytes.TrimRight(b, "\r\n")
		if len(secret) == 0 {
			return nil, fmt.Errorf("auth.webhook_secret_file: %s is empty", a.WebhookSecretFile)
		}
	default:
		return nil, nil
	}
	if len(secret) < minWebhookSecretLength {
		return nil, fmt.Errorf("auth: webhook secret is shorter than %d bytes; generate a longer one (e.g. openssl rand -hex 32)", minWebhookSecretLength)
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
