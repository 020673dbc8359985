package web

import (
	"fmt"
	"html"
	"strings"
	"testing"
)

// A small HTML tokenizer for the tests: html/template always quotes
// attribute values and escapes '<' in text, so any '<' in our output starts
// markup. It is strict on purpose: output it cannot read fails the test.

type tokKind int

const (
	tokStart tokKind = iota
	tokEnd
	tokText
)

type token struct {
	kind  tokKind
	name  string            // lower-cased tag name
	attrs map[string]string // unescaped values
	order []string          // attribute names in order, duplicates included
	text  string            // unescaped text; raw for script/style bodies
}

var voidElements = map[string]bool{"meta": true, "link": true, "input": true, "br": true, "img": true, "hr": true, "source": true, "wbr": true}

func tokenize(t *testing.T, doc string) []token {
	t.Helper()
	toks, err := tokenizeHTML(doc)
	if err != nil {
		t.Fatalf("tokenize: %v\n%s", err, doc)
	}
	return toks
}

func tokenizeHTML(doc string) ([]token, error) {
	var out []token
	i := 0
	for i < len(doc) {
		lt := strings.IndexByte(doc[i:], '<')
		if lt < 0 {
			out = append(out, token{kind: tokText, text: html.UnescapeString(doc[i:])})
			break
		}
		if lt > 0 {
			out = append(out, token{kind: tokText, text: html.UnescapeString(doc[i : i+lt])})
		}
		i += lt
		switch {
		case strings.HasPrefix(doc[i:], "<!--"):
			end := strings.Index(doc[i:], "-->")
			if end < 0 {
				return nil, fmt.Errorf("unterminated comment at %d", i)
			}
			i += end + 3
			continue
		case strings.HasPrefix(doc[i:], "<!"):
			end := strings.IndexByte(doc[i:], '>')
			if end < 0 {
				return nil, fmt.Errorf("unterminated doctype at %d", i)
			}
			i += end + 1
			continue
		}
		tok, n, err := readTag(doc[i:])
		if err != nil {
			return nil, fmt.Errorf("at %d: %w", i, err)
		}
		i += n
		out = append(out, tok)
		if tok.kind == tokStart && (tok.name == "script" || tok.name == "style") {
			closing := "</" + tok.name
			end := strings.Index(strings.ToLower(doc[i:]), closing)
			if end < 0 {
				return nil, fmt.Errorf("unterminated <%s> at %d", tok.name, i)
			}
			if end > 0 {
				out = append(out, token{kind: tokText, text: doc[i : i+end]})
			}
			i += end
		}
	}
	return out, nil
}

func readTag(s string) (token, int, error) {
	i := 1
	tok := token{kind: tokStart, attrs: map[string]string{}}
	if i < len(s) && s[i] == '/' {
		tok.kind = tokEnd
		i++
	}
	start := i
	for i < len(s) && isNameByte(s[i]) {
		i++
	}
	if i == start {
		return tok, 0, fmt.Errorf("'<' not followed by a tag name: %q", prefix(s, 40))
	}
	tok.name = strings.ToLower(s[start:i])
	for {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i >= len(s) {
			return tok, 0, fmt.Errorf("unterminated tag %q", prefix(s, 40))
		}
		if s[i] == '>' {
			return tok, i + 1, nil
		}
		if s[i] == '/' && i+1 < len(s) && s[i+1] == '>' {
			return tok, i + 2, nil
		}
		start := i
		for i < len(s) && !isSpace(s[i]) && s[i] != '=' && s[i] != '>' && s[i] != '/' {
			i++
		}
		name := strings.ToLower(s[start:i])
		if name == "" {
			return tok, 0, fmt.Errorf("bad attribute in %q", prefix(s, 60))
		}
		val := ""
		if i < len(s) && s[i] == '=' {
			i++
			if i >= len(s) {
				return tok, 0, fmt.Errorf("unterminated attribute %s", name)
			}
			if q := s[i]; q == '"' || q == '\'' {
				end := strings.IndexByte(s[i+1:], q)
				if end < 0 {
					return tok, 0, fmt.Errorf("unterminated value of %s", name)
				}
				val = s[i+1 : i+1+end]
				i += end + 2
			} else {
				start := i
				for i < len(s) && !isSpace(s[i]) && s[i] != '>' {
					i++
				}
				val = s[start:i]
			}
		}
		tok.attrs[name] = html.UnescapeString(val)
		tok.order = append(tok.order, name)
	}
}

func isNameByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-'
}

func isSpace(b byte) bool { return b == ' ' || b == '\n' || b == '\t' || b == '\r' || b == '\f' }

func prefix(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func (tok token) hasClass(c string) bool {
	for _, f := range strings.Fields(tok.attrs["class"]) {
		if f == c {
			return true
		}
	}
	return false
}

// elements returns the indexes of the start tags named name (any name when
// "") that carry every class in classes.
func elements(toks []token, name string, classes ...string) []int {
	var out []int
	for i, tok := range toks {
		if tok.kind != tokStart || (name != "" && tok.name != name) {
			continue
		}
		ok := true
		for _, c := range classes {
			ok = ok && tok.hasClass(c)
		}
		if ok {
			out = append(out, i)
		}
	}
	return out
}

// innerText is the text inside the element starting at toks[i].
func innerText(toks []token, i int) string {
	if voidElements[toks[i].name] {
		return ""
	}
	var b strings.Builder
	depth := 0
	for _, tok := range toks[i+1:] {
		switch tok.kind {
		case tokStart:
			if !voidElements[tok.name] {
				depth++
			}
		case tokEnd:
			if depth == 0 {
				return b.String()
			}
			depth--
		case tokText:
			b.WriteString(tok.text)
		}
	}
	return b.String()
}

// one returns the single element matching name and classes, failing the
// test when there is not exactly one.
func one(t *testing.T, toks []token, name string, classes ...string) token {
	t.Helper()
	idx := elements(toks, name, classes...)
	if len(idx) != 1 {
		t.Fatalf("elements <%s class=%v> = %d, want 1", name, classes, len(idx))
	}
	return toks[idx[0]]
}

func oneText(t *testing.T, toks []token, name string, classes ...string) string {
	t.Helper()
	idx := elements(toks, name, classes...)
	if len(idx) != 1 {
		t.Fatalf("elements <%s class=%v> = %d, want 1", name, classes, len(idx))
	}
	return strings.TrimSpace(innerText(toks, idx[0]))
}

// assertInert fails the test when doc holds anything that could run script
// or style (see inertProblems).
func assertInert(t *testing.T, label, doc string) {
	t.Helper()
	for _, p := range inertProblems(doc) {
		t.Errorf("%s: %s", label, p)
	}
}

// inertProblems lists what in doc could run script or style: a <script>
// other than our deferred app.js with an empty body, any on* or style
// attribute, a repeated attribute, a <style>, <img>, <iframe> or similar
// element, or an href, src or action that is not a local or http(s) URL.
func inertProblems(doc string) []string {
	toks, err := tokenizeHTML(doc)
	if err != nil {
		return []string{"unreadable HTML: " + err.Error()}
	}
	var out []string
	bad := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	for i, tok := range toks {
		if tok.kind != tokStart {
			continue
		}
		switch tok.name {
		case "script":
			if tok.attrs["src"] != "/static/app.js" || len(tok.order) != 2 || tok.order[1] != "defer" {
				bad("unexpected <script %v>", tok.attrs)
			}
			if i+1 < len(toks) && toks[i+1].kind == tokText {
				bad("<script> has an inline body %q", toks[i+1].text)
			}
		case "style", "img", "iframe", "object", "embed", "svg", "base":
			bad("unexpected <%s> element", tok.name)
		}
		seen := map[string]bool{}
		for _, name := range tok.order {
			if seen[name] {
				bad("<%s> repeats attribute %s (injected?)", tok.name, name)
			}
			seen[name] = true
			if strings.HasPrefix(name, "on") {
				bad("<%s> has event handler attribute %s=%q", tok.name, name, tok.attrs[name])
			}
			if name == "style" {
				bad("<%s> has a style attribute", tok.name)
			}
			if name == "href" || name == "src" || name == "action" || name == "formaction" {
				v := strings.ToLower(strings.TrimSpace(tok.attrs[name]))
				local := strings.HasPrefix(v, "/") && !strings.HasPrefix(v, "//")
				if !local && !strings.HasPrefix(v, "http://") && !strings.HasPrefix(v, "https://") {
					bad("<%s %s=%q> is not a plain http(s) or local URL", tok.name, name, tok.attrs[name])
				}
			}
		}
	}
	return out
}

func TestInertProblems_CatchesLiveMarkup(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		bad  bool
	}{
		{"our script", `<script src="/static/app.js" defer></script>`, false},
		{"escaped text", `<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>`, false},
		{"escaped attribute", `<b data-image="x&#34;&gt;&lt;img src=x onerror=alert(1)&gt;">x</b>`, false},
		{"inline script", `<script>alert(1)</script>`, true},
		{"our script with a body", `<script src="/static/app.js" defer>alert(1)</script>`, true},
		{"event handler", `<b onclick="x()">x</b>`, true},
		{"injected image", `<b data-image="x"><img src=x onerror=alert(1)>">`, true},
		{"style attribute", `<p style="color:red">x</p>`, true},
		{"style element", `<style>p{}</style>`, true},
		{"javascript link", `<a href="javascript:alert(1)">x</a>`, true},
		{"entity-hidden javascript link", `<a href="&#106;avascript:alert(1)">x</a>`, true},
		{"protocol-relative link", `<a href="//evil.example/">x</a>`, true},
		{"repeated attribute", `<a href="/" href="/x">x</a>`, true},
		{"stray angle bracket", `<p>a < b</p>`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := inertProblems(tt.doc)
			if (len(got) > 0) != tt.bad {
				t.Errorf("inertProblems(%q) = %q, want problems: %v", tt.doc, got, tt.bad)
			}
		})
	}
}
