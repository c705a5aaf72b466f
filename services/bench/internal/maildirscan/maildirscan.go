// Package maildirscan looks at the mail the benchmarks delivered: the
// Maildirs under a mail root in the layout both postcove's mailbox and the
// benchmarks' dovecot use, <root>/<domain>/<user>/Maildir. A message is a
// file in new/ or cur/ of a Maildir (tmp/ holds deliveries in progress,
// http://cr.yp.to/proto/maildir.html); only the INBOX is looked at.
package maildirscan

import (
	"bufio"
	"errors"
	"fmt"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
)

// maildirs are the INBOX directories under root.
func maildirs(root string) ([]string, error) {
	return filepath.Glob(filepath.Join(root, "*", "*", "Maildir"))
}

// walk calls f with the path of every message under root.
func walk(root string, f func(path string) error) error {
	dirs, err := maildirs(root)
	if err != nil {
		return err
	}
	for _, d := range dirs {
		for _, sub := range []string{"new", "cur"} {
			dir := filepath.Join(d, sub)
			entries, err := os.ReadDir(dir)
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return err
			}
			for _, e := range entries {
				if !e.Type().IsRegular() {
					continue
				}
				if err := f(filepath.Join(dir, e.Name())); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// Count is the number of messages under root. It reads directories only,
// so it is cheap enough to poll.
func Count(root string) (int, error) {
	n := 0
	err := walk(root, func(string) error { n++; return nil })
	return n, err
}

// MessageIDs reads the Message-ID header field of every message under root
// and returns how many messages carry each (as written, angle brackets
// included); messages without one count under "".
func MessageIDs(root string) (map[string]int, error) {
	ids := make(map[string]int)
	err := walk(root, func(path string) error {
		id, err := messageID(path)
		if err != nil {
			return err
		}
		ids[id]++
		return nil
	})
	return ids, err
}

// messageID reads the header of the message in path (RFC 5322 section
// 2.2, folded lines unfolded) and returns its Message-ID, "" without one.
func messageID(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	m, err := mail.ReadMessage(bufio.NewReader(f))
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return strings.TrimSpace(m.Header.Get("Message-Id")), nil
}
