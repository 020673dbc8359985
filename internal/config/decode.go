package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// yaml.v3 decodes the file and finds syntax errors, duplicate keys and
// values of the wrong type, each with its line. The walk below adds what
// the library cannot do:
//   - name the field: it says "line 7: cannot unmarshal !!str `1x` into
//     time.Duration", never services.web.health.interval;
//   - refuse unknown keys under a type with UnmarshalYAML (Service, for its
//     defaults): Node.Decode has no KnownFields, so they would pass;
//   - explain a secret written into the file (token: for token_env);
//   - keep the default of a key written with no value (it zeroes lists and
//     map entries given as null); refuse 1.5 as an integer and yes as a
//     boolean, which it accepts; take a plain 0 as a duration; say what is
//     wrong with a rate (2%, 0.02) before UnmarshalYAML's error loses the
//     line;
//   - remember the line of each key, for validation errors.

// walker checks a YAML tree against the type it decodes into. visits
// bounds the walk where aliases repeat a node many times.
type walker struct {
	file          string
	lines         map[string]int // field path -> line of its key
	errs          []error
	visits, limit int
}

// decode parses data, the single YAML document of file, into c, which holds
// its defaults. It returns the line of every field path written.
func decode(file string, data []byte, c *Config) (map[string]int, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc, extra yaml.Node
	err := dec.Decode(&doc)
	if err == nil {
		if err = dec.Decode(&extra); err == nil {
			return nil, fmt.Errorf("%s:%d: a configuration file holds one YAML document, found a second", file, extra.Line)
		}
	}
	switch {
	case errors.Is(err, io.EOF) && len(doc.Content) == 0:
		return nil, nil // no document: the defaults, for validation to judge
	case !errors.Is(err, io.EOF):
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	w := &walker{file: file, lines: map[string]int{}, limit: 100000}
	w.walk(doc.Content[0], reflect.TypeOf(c).Elem(), "")
	if err := errors.Join(w.errs...); err != nil {
		return nil, err
	}
	if err := doc.Decode(c); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err) // what the walk did not foresee
	}
	return w.lines, nil
}

func (w *walker) fail(n *yaml.Node, path, format string, args ...any) {
	w.errs = append(w.errs, &fieldError{Origin: fmt.Sprintf("%s:%d", w.file, n.Line), Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem() // an optional block (services.<name>.backup)
	}
	switch w.visits++; {
	case w.visits > w.limit:
		w.errs = append(w.errs[:min(len(w.errs), 1)], fmt.Errorf("%s: document too large or too many aliases", w.file))
	case n.Tag == "!!null" && t.Kind() == reflect.Struct:
		n.Kind, n.Tag = yaml.MappingNode, "!!map" // "web:" alone means the defaults
	case n.Tag == "!!null":
	case n.Kind == yaml.MappingNode && (t.Kind() == reflect.Struct || t.Kind() == reflect.Map):
		w.mapping(n, t, path)
	case n.Kind == yaml.SequenceNode && t.Kind() == reflect.Slice:
		for i, item := range n.Content {
			w.lines[fmt.Sprintf("%s[%d]", path, i)] = item.Line
			w.walk(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	case t == reflect.TypeOf(time.Duration(0)) && n.Kind == yaml.ScalarNode:
		if _, err := time.ParseDuration(n.Value); err == nil {
			n.Tag = "!!str"
		} else if n.Tag == "!!int" {
			w.fail(n, path, "invalid duration %q: give a unit, e.g. %ss", n.Value, n.Value)
		} else {
			w.fail(n, path, "invalid duration %q", n.Value)
		}
	case t == reflect.TypeOf(ErrorRate(0)) && n.Kind == yaml.ScalarNode:
		if _, err := parseErrorRate(n.Value); err != nil {
			w.fail(n, path, "%v", err)
		}
	case t == reflect.TypeOf(ByteSize(0)) && n.Kind == yaml.ScalarNode:
		if err := new(ByteSize).UnmarshalYAML(n); err != nil {
			w.fail(n, path, "%v", err)
		}
	case n.Decode(reflect.New(t).Interface()) != nil || t.Kind() == reflect.Int && n.Tag != "!!int" || t.Kind() == reflect.Bool && n.Tag != "!!bool":
		got := map[yaml.Kind]string{yaml.MappingNode: "a mapping", yaml.SequenceNode: "a list", yaml.ScalarNode: fmt.Sprintf("%q", n.Value)}
		w.fail(n, path, "must be %s, got %s", wants(t), got[n.Kind])
	}
}

// mapping walks a struct's or a map's keys. A struct's keys written with no
// value are dropped, so that yaml.v3 leaves their defaults alone.
func (w *walker) mapping(n *yaml.Node, t reflect.Type, path string) {
	fields := map[string]reflect.Type{}
	for i := 0; t.Kind() == reflect.Struct && i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		fields[name] = t.Field(i).Type
	}
	hinter, _ := reflect.New(t).Interface().(interface{ unknownKeyHint(string) string })
	seen, kept := map[string]int{}, n.Content[:0:0]
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		p, ft := joinKey(path, k.Value), fields[k.Value]
		if t.Kind() == reflect.Map {
			ft = t.Elem()
		}
		switch first, dup := seen[k.Value]; {
		case k.Tag == "!!merge":
			w.fail(k, path, "merge keys (<<) are not supported; repeat the settings instead")
		case dup:
			w.fail(k, p, "duplicate key (first defined on line %d)", first)
		case path == "" && strings.HasPrefix(k.Value, "x-"): // free, as in Compose files, for anchors
			kept = append(kept, k, v)
		case ft == nil || k.Kind != yaml.ScalarNode:
			msg := "unknown key"
			if hinter != nil && hinter.unknownKeyHint(k.Value) != "" {
				msg = hinter.unknownKeyHint(k.Value)
			}
			w.fail(k, p, "%s", msg)
		// An optional block written with no value is there, with its
		// defaults, like "web:" alone.
		case v.Tag != "!!null" || t.Kind() == reflect.Map || ft.Kind() == reflect.Pointer:
			kept = append(kept, k, v)
			w.lines[p] = k.Line
			w.walk(v, ft, p)
		}
		seen[k.Value] = k.Line
	}
	n.Content = kept
}

// wants says what a value decoded into t must be.
func wants(t reflect.Type) string {
	switch t {
	case reflect.TypeOf(time.Duration(0)):
		return "a duration such as 30s or 5m"
	case reflect.TypeOf(ErrorRate(0)):
		return "a percentage such as 2% or a fraction such as 0.02"
	case reflect.TypeOf(ByteSize(0)):
		return "a memory size such as 512m or 1g"
	}
	if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String {
		return `a list of strings such as ["a", "b"]`
	}
	return map[reflect.Kind]string{reflect.String: "a string", reflect.Int: "an integer", reflect.Bool: "true or false",
		reflect.Float64: "a number", reflect.Slice: "a list", reflect.Map: "a mapping", reflect.Struct: "a mapping"}[t.Kind()]
}
