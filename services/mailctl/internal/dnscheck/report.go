package dnscheck

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// detailWidth is where table details wrap: readable in an 80-column
// terminal after the status and check columns.
const detailWidth = 72

// WriteTable writes the findings as aligned columns, status first, each
// followed by its detail indented under the message, then a summary line.
func (r *Report) WriteTable(w io.Writer) error {
	checkWidth := len("CHECK")
	for _, f := range r.Findings {
		checkWidth = max(checkWidth, len(f.Check))
	}
	var b strings.Builder
	row := func(status, check, msg string) {
		fmt.Fprintf(&b, "%-6s  %-*s  %s\n", status, checkWidth, check, msg)
	}
	row("STATUS", "CHECK", "MESSAGE")
	pad := strings.Repeat(" ", 6+2+checkWidth+2)
	for _, f := range r.Findings {
		row(strings.ToUpper(string(f.Status)), f.Check, f.Message)
		for _, line := range wrapDetail(f.Detail, detailWidth) {
			b.WriteString(strings.TrimRight(pad+line, " ") + "\n")
		}
	}
	fmt.Fprintf(&b, "\n%s: %d passed, %d warnings, %d failed\n", r.Domain, r.Count(Pass), r.Count(Warn), r.Count(Fail))
	_, err := io.WriteString(w, b.String())
	return err
}

// wrapDetail splits a detail into lines of at most width, keeping lines
// that start with two spaces (records to paste, carets) as they are.
func wrapDetail(detail string, width int) []string {
	if detail == "" {
		return nil
	}
	var out []string
	for _, para := range strings.Split(detail, "\n") {
		if strings.HasPrefix(para, "  ") {
			out = append(out, para)
			continue
		}
		line := ""
		for _, word := range strings.Fields(para) {
			if line != "" && len(line)+1+len(word) > width {
				out = append(out, line)
				line = ""
			}
			if line != "" {
				line += " "
			}
			line += word
		}
		out = append(out, line)
	}
	return out
}

// jsonReport is the --format json document, for monitoring: ok is false
// when any finding failed.
type jsonReport struct {
	Domain   string    `json:"domain"`
	OK       bool      `json:"ok"`
	Pass     int       `json:"pass"`
	Warn     int       `json:"warn"`
	Fail     int       `json:"fail"`
	Findings []Finding `json:"findings"`
}

// WriteJSON writes the report as one JSON document.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	findings := r.Findings
	if findings == nil {
		findings = []Finding{}
	}
	return enc.Encode(jsonReport{
		Domain: r.Domain, OK: !r.Failed(),
		Pass: r.Count(Pass), Warn: r.Count(Warn), Fail: r.Count(Fail),
		Findings: findings,
	})
}
