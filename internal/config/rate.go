package config

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// ErrorRate is a share of requests, written as a percentage ("2%",
// "0.5%") or as a fraction below 1 ("0.02"). A bare 1 or more is refused
// rather than guessed: "1" might mean 1% or 100%.
type ErrorRate float64

var decimalRE = regexp.MustCompile(`^-?([0-9]+(\.[0-9]*)?|\.[0-9]+)$`)

// parseErrorRate reads an ErrorRate; its range is Validate's to judge.
func parseErrorRate(s string) (ErrorRate, error) {
	if num, ok := strings.CutSuffix(s, "%"); ok {
		if !decimalRE.MatchString(num) {
			return 0, fmt.Errorf("invalid percentage %q: write it as 2%% or 0.5%%", s)
		}
		// Parsing "2e-2" rounds once, so "2%" is exactly the fraction 0.02
		// and a measured 4 of 200 compares equal to it.
		f, err := strconv.ParseFloat(num+"e-2", 64)
		return ErrorRate(f), err
	}
	if !decimalRE.MatchString(s) {
		return 0, fmt.Errorf("invalid rate %q: write a percentage such as 2%% or a fraction such as 0.02", s)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, err
	}
	if f >= 1 {
		return 0, fmt.Errorf("ambiguous rate %q: a bare number is a fraction (0.02 is 2%%); write %s%% for a percentage, 100%% for all", s, s)
	}
	return ErrorRate(f), nil
}

// UnmarshalYAML reads a percentage or a fraction.
func (r *ErrorRate) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("a rate must be a percentage such as 2% or a fraction such as 0.02")
	}
	v, err := parseErrorRate(n.Value)
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// MarshalYAML writes the rate as a percentage, which reads back exactly.
func (r ErrorRate) MarshalYAML() (any, error) { return r.String(), nil }

// String is the rate as a percentage: "2%", "0.5%", "7.5%". The digits are
// the fraction's shortest decimal form with the point moved, not a product
// that could round: parsing the result gives back r exactly.
func (r ErrorRate) String() string {
	s := strconv.FormatFloat(float64(r), 'f', -1, 64)
	sign, s := "", strings.TrimPrefix(s, "-")
	if float64(r) < 0 {
		sign = "-"
	}
	whole, frac, _ := strings.Cut(s, ".")
	frac += "00"
	whole = strings.TrimLeft(whole+frac[:2], "0")
	if whole == "" {
		whole = "0"
	}
	if frac = strings.TrimRight(frac[2:], "0"); frac != "" {
		whole += "." + frac
	}
	return sign + whole + "%"
}
