package cli

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/term"
)

func stdinIsTerminal() bool { return term.IsTerminal(int(os.Stdin.Fd())) }

func readPasswordNoEcho() (string, error) {
	b, err := term.ReadPassword(int(os.Stdin.Fd()))
	fmt.Fprintln(os.Stderr)
	return string(b), err
}

// password gets a password the way the contract promises: from a prompt
// when stdin is a terminal, from the first line of stdin with
// --password-stdin, and from the command line only when the user insists
// with --password (it is then visible in the process list).
func (a *app) password(fromStdin bool, insisted string, confirm bool) (string, error) {
	switch {
	case insisted != "":
		fmt.Fprintln(a.env.Stderr, "mailctl: warning: --password is visible to other users of this machine; prefer --password-stdin")
		return insisted, nil
	case fromStdin:
		line, err := bufio.NewReader(a.env.Stdin).ReadString('\n')
		if err != nil && line == "" {
			return "", fmt.Errorf("--password-stdin: no password on standard input")
		}
		p := strings.TrimRight(line, "\r\n")
		if p == "" {
			return "", errors.New("--password-stdin: the password is empty")
		}
		return p, nil
	case a.env.IsTerminal():
		fmt.Fprint(a.env.Stderr, "Password: ")
		p, err := a.env.ReadPassword()
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		if p == "" {
			return "", errors.New("the password is empty")
		}
		if confirm {
			fmt.Fprint(a.env.Stderr, "Again: ")
			again, err := a.env.ReadPassword()
			if err != nil {
				return "", fmt.Errorf("read password: %w", err)
			}
			if again != p {
				return "", errors.New("the passwords do not match")
			}
		}
		return p, nil
	}
	return "", usagef("standard input is not a terminal: pipe the password in with --password-stdin")
}
