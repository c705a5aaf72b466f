// Package logging builds the services' structured loggers: log/slog with the
// JSON handler, one object a line, so that docker logs and log shippers read
// them without a parser per service.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Levels are the names ParseLevel accepts, for configuration references and
// Validate messages.
const Levels = "debug, info, warn, error"

// New returns a JSON logger writing to w that drops records below level
// ("debug", "info", "warn" or "error").
func New(w io.Writer, level string) (*slog.Logger, error) {
	l, err := ParseLevel(level)
	if err != nil {
		return nil, err
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// ParseLevel maps a level name to its slog.Level. Case does not matter and
// "warning" is accepted for "warn"; anything else is an error naming the
// value, so a Validate method can report it early.
func ParseLevel(level string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(level)) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown log level %q (want one of %s)", level, Levels)
}

// Discard returns a logger that writes nothing, for callers that were given
// no logger.
func Discard() *slog.Logger {
	return slog.New(slog.DiscardHandler)
}

// Printer adapts a structured logger to the Printf/Println logger that
// libraries such as go-smtp take for their own messages (accept errors,
// recovered panics with their stack): each becomes one warning, its text
// after Prefix.
type Printer struct {
	Log    *slog.Logger
	Prefix string // e.g. "lmtp: "
}

func (p Printer) Printf(format string, v ...any) {
	p.Log.Warn(p.Prefix + strings.TrimSpace(fmt.Sprintf(format, v...)))
}

func (p Printer) Println(v ...any) {
	p.Log.Warn(p.Prefix + strings.TrimSpace(fmt.Sprintln(v...)))
}
