package pop3d

import (
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits of the command syntax. RFC 2449 section 4 bounds keywords to 3 or 4
// printable characters and arguments to 40; the parser is a little more
// lenient with arguments (a long UIDL-sized number is still a number) but
// never with keywords.
const (
	minKeywordLen = 3
	maxKeywordLen = 4
	maxArgLen     = 40
	// maxMsgNum bounds message numbers and TOP's line count; larger values
	// are answered "no such message" rather than overflowing.
	maxMsgNum = 1<<31 - 1
)

// Errors of the command parser. Each is answered with -ERR; none ends the
// session by itself.
var (
	errEmptyCommand = errors.New("empty command")
	errBadKeyword   = errors.New("invalid command keyword")
	errBadArgument  = errors.New("invalid argument")
	errBadNumber    = errors.New("invalid number")
)

// command is one parsed client command line.
type command struct {
	// name is the keyword in upper case (RFC 1939 section 3: keywords are
	// case-insensitive).
	name string
	// args are the arguments. For USER and PASS there is at most one: the
	// rest of the line after the keyword and one space, spaces included
	// (RFC 1939 section 7 allows a server to treat spaces in the PASS
	// argument as part of the password; the same holds for user names).
	args []string
}

// restOfLine lists the commands whose single argument is the rest of the line.
var restOfLine = map[string]bool{"USER": true, "PASS": true}

// parseCommand parses a command line without its line ending. It accepts
// any number of spaces between arguments (clients differ) but no other
// control characters outside USER and PASS, whose argument is returned
// as sent except that it must be UTF-8: it is passed to the auth service,
// whose strings are UTF-8 (a password in another encoding cannot match).
func parseCommand(line string) (command, error) {
	keyword, rest, _ := strings.Cut(line, " ")
	if keyword == "" {
		if strings.Trim(line, " ") == "" {
			return command{}, errEmptyCommand
		}
		return command{}, errBadKeyword
	}
	if len(keyword) < minKeywordLen || len(keyword) > maxKeywordLen {
		return command{}, errBadKeyword
	}
	for i := 0; i < len(keyword); i++ {
		c := keyword[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return command{}, errBadKeyword
		}
	}
	cmd := command{name: strings.ToUpper(keyword)}
	if restOfLine[cmd.name] {
		if rest == "" {
			return cmd, nil
		}
		if !utf8.ValidString(rest) || strings.ContainsAny(rest, "\x00\r\n") {
			return command{}, errBadArgument
		}
		cmd.args = []string{rest}
		return cmd, nil
	}
	for _, f := range strings.Split(rest, " ") {
		if f == "" {
			continue
		}
		if len(f) > maxArgLen && cmd.name != "AUTH" {
			return command{}, errBadArgument
		}
		for i := 0; i < len(f); i++ {
			if f[i] <= ' ' || f[i] >= 0x7f {
				return command{}, errBadArgument
			}
		}
		cmd.args = append(cmd.args, f)
	}
	return cmd, nil
}

// parseNumber parses a message number or a line count: decimal digits only
// (no sign, no spaces), at most maxMsgNum.
func parseNumber(s string) (int, error) {
	if s == "" || len(s) > 10 {
		return 0, errBadNumber
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errBadNumber
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > maxMsgNum {
		return 0, errBadNumber
	}
	return int(n), nil
}
