package config

import (
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// This file decodes YAML into a struct by walking a yaml.Node instead of
// using yaml.v3's Decoder.KnownFields: KnownFields rejects unknown keys but
// its errors carry neither the field path nor, for type errors, the key, and
// it silently keeps the last of two duplicate keys. A walker keyed by the
// `yaml` struct tags gives every problem as "file:line: a.b[0].c: message".

// fieldError is one problem found in the configuration, located by its
// origin ("config.yml:12" or "env DEPLOYD_LISTEN"; may be empty) and the
// dotted path of the field.
type fieldError struct {
	Origin string
	Path   string
	Msg    string
}

func (e *fieldError) Error() string {
	var b strings.Builder
	if e.Origin != "" {
		b.WriteString(e.Origin)
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// defaulter is implemented by structs that need their defaults in place
// before a map value or list item of their type is decoded, so that keys
// absent from the file keep the default while explicit zeros (replicas: 0)
// survive to be rejected by validation.
type defaulter interface {
	applyDefaults()
}

// keyHinter is implemented by structs that want to explain why a particular
// unknown key is wrong (a secret written into the file, for instance).
type keyHinter interface {
	unknownKeyHint(key string) string
}

// maxNodeVisits bounds the work aliases can cause: a small document whose
// anchors reference each other expands exponentially.
const maxNodeVisits = 100000

// maxErrors bounds how many problems one decode reports; beyond that the
// user has a different problem than typos.
const maxErrors = 50

var durationType = reflect.TypeOf(time.Duration(0))

type strictDecoder struct {
	file   string
	errs   []error
	visits int
	// lines records, per field path, the line its value was written on, so
	// that later validation can point at the same place.
	lines map[string]int
}

// decodeStrict parses data (the contents of file) as a single YAML document
// into out, which must be a pointer to a struct already holding its defaults.
// It returns the line of every field path it set and all problems found,
// joined; on error out may be partly written.
func decodeStrict(file string, data []byte, out any) (map[string]int, error) {
	d := &strictDecoder{file: file, lines: map[string]int{}}
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			// An empty file is a configuration of defaults only; validation
			// says what is missing.
			return d.lines, nil
		}
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, &fieldError{Origin: d.origin(&extra), Msg: "a configuration file holds one YAML document, found a second"}
	} else if !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return d.lines, nil
		}
		root = root.Content[0]
	}
	d.decode(root, "", reflect.ValueOf(out).Elem())
	return d.lines, errors.Join(d.errs...)
}

func (d *strictDecoder) origin(n *yaml.Node) string {
	if n == nil || n.Line == 0 {
		return d.file
	}
	return fmt.Sprintf("%s:%d", d.file, n.Line)
}

func (d *strictDecoder) fail(n *yaml.Node, path, format string, args ...any) {
	if len(d.errs) == maxErrors {
		d.errs = append(d.errs, &fieldError{Origin: d.file, Msg: "too many errors, giving up"})
	}
	if len(d.errs) > maxErrors {
		return
	}
	d.errs = append(d.errs, &fieldError{Origin: d.origin(n), Path: path, Msg: fmt.Sprintf(format, args...)})
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	default:
		return "a document"
	}
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

var plainKeyRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func joinKey(path, key string) string {
	if !plainKeyRE.MatchString(key) {
		return fmt.Sprintf("%s[%q]", path, key)
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// decode sets v from n. A null value leaves v as it was: "health:" with
// nothing under it means "the defaults", not "zero everything".
func (d *strictDecoder) decode(n *yaml.Node, path string, v reflect.Value) {
	d.visits++
	if d.visits > maxNodeVisits {
		if d.visits == maxNodeVisits+1 {
			d.fail(n, path, "document too large or too many alias expansions")
		}
		return
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			d.fail(n, path, "unresolved alias")
			return
		}
		d.decode(n.Alias, path, v)
		return
	}
	if isNull(n) {
		return
	}
	if v.Type() == durationType {
		d.decodeDuration(n, path, v)
		return
	}
	switch v.Kind() {
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.fail(n, path, "must be a string, got %s", kindName(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Int, reflect.Int64, reflect.Int32:
		d.decodeInt(n, path, v)
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&b) != nil {
			d.fail(n, path, "must be true or false, got %s", kindName(n))
			return
		}
		v.SetBool(b)
	case reflect.Struct:
		d.decodeStruct(n, path, v)
	case reflect.Slice:
		d.decodeSlice(n, path, v)
	case reflect.Map:
		d.decodeMap(n, path, v)
	default:
		// A programming error in the config types, not a user error.
		panic(fmt.Sprintf("yamlstrict: unsupported field type %s at %s", v.Type(), path))
	}
}

func (d *strictDecoder) decodeDuration(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.ScalarNode {
		d.fail(n, path, "must be a duration such as 30s or 5m, got %s", kindName(n))
		return
	}
	dur, err := time.ParseDuration(n.Value)
	if err != nil {
		if _, numErr := strconv.Atoi(n.Value); numErr == nil {
			d.fail(n, path, "invalid duration %q: give a unit, e.g. %ss", n.Value, n.Value)
			return
		}
		d.fail(n, path, "invalid duration %q", n.Value)
		return
	}
	v.SetInt(int64(dur))
}

func (d *strictDecoder) decodeInt(n *yaml.Node, path string, v reflect.Value) {
	var i int64
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || n.Decode(&i) != nil {
		d.fail(n, path, "must be an integer, got %s", kindName(n))
		return
	}
	if v.OverflowInt(i) {
		d.fail(n, path, "integer %s out of range", n.Value)
		return
	}
	v.SetInt(i)
}

// mappingPairs returns the key/value pairs of a mapping node, reporting
// non-string keys, duplicates and merge keys.
func (d *strictDecoder) mappingPairs(n *yaml.Node, path string) [][2]*yaml.Node {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "must be a mapping, got %s", kindName(n))
		return nil
	}
	seen := make(map[string]int, len(n.Content)/2)
	pairs := make([][2]*yaml.Node, 0, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.AliasNode && k.Alias != nil {
			k = k.Alias
		}
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			d.fail(k, path, "merge keys (<<) are not supported; repeat the settings instead")
			continue
		}
		if k.Kind != yaml.ScalarNode || isNull(k) {
			d.fail(k, path, "keys must be strings, got %s", kindName(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.fail(k, joinKey(path, k.Value), "duplicate key (first defined on line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		pairs = append(pairs, [2]*yaml.Node{k, val})
	}
	return pairs
}

func (d *strictDecoder) decodeStruct(n *yaml.Node, path string, v reflect.Value) {
	pairs := d.mappingPairs(n, path)
	if pairs == nil {
		return
	}
	t := v.Type()
	fields := make(map[string]int, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		fields[name] = i
	}
	for _, p := range pairs {
		k, val := p[0], p[1]
		fpath := joinKey(path, k.Value)
		if path == "" && strings.HasPrefix(k.Value, "x-") {
			// Top-level "x-" keys are free for the user, as in Compose
			// files: they hold anchors that services alias.
			continue
		}
		idx, ok := fields[k.Value]
		if !ok {
			msg := "unknown key"
			if h, isHinter := v.Addr().Interface().(keyHinter); isHinter {
				if hint := h.unknownKeyHint(k.Value); hint != "" {
					msg = hint
				}
			}
			d.fail(k, fpath, "%s", msg)
			continue
		}
		d.lines[fpath] = k.Line
		d.decode(val, fpath, v.Field(idx))
	}
}

func (d *strictDecoder) decodeSlice(n *yaml.Node, path string, v reflect.Value) {
	elem := v.Type().Elem()
	if n.Kind != yaml.SequenceNode {
		if elem.Kind() == reflect.String {
			d.fail(n, path, "must be a list of strings such as [\"a\", \"b\"], got %s", kindName(n))
		} else {
			d.fail(n, path, "must be a list, got %s", kindName(n))
		}
		return
	}
	// An explicit list replaces the default one rather than appending to it.
	out := reflect.MakeSlice(v.Type(), 0, len(n.Content))
	for i, item := range n.Content {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		ev := newElem(elem)
		d.lines[ipath] = item.Line
		d.decode(item, ipath, ev)
		out = reflect.Append(out, ev)
	}
	v.Set(out)
}

func (d *strictDecoder) decodeMap(n *yaml.Node, path string, v reflect.Value) {
	if v.Type().Key().Kind() != reflect.String {
		panic(fmt.Sprintf("yamlstrict: unsupported map key type %s at %s", v.Type().Key(), path))
	}
	pairs := d.mappingPairs(n, path)
	if pairs == nil {
		return
	}
	out := reflect.MakeMapWithSize(v.Type(), len(pairs))
	for _, p := range pairs {
		k, val := p[0], p[1]
		kpath := joinKey(path, k.Value)
		ev := newElem(v.Type().Elem())
		d.lines[kpath] = k.Line
		d.decode(val, kpath, ev)
		out.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), ev)
	}
	v.Set(out)
}

// newElem returns an addressable zero value of t with its defaults applied.
func newElem(t reflect.Type) reflect.Value {
	ev := reflect.New(t).Elem()
	if dft, ok := ev.Addr().Interface().(defaulter); ok {
		dft.applyDefaults()
	}
	return ev
}
