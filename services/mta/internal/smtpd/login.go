package smtpd

import "github.com/emersion/go-sasl"

// loginServer is the server side of the LOGIN mechanism
// (draft-murchison-sasl-login): obsolete, but Outlook and many devices
// still use only it. go-sasl has its client only. The client may send the
// user name as the initial response (AUTH LOGIN dXNlcg==).
type loginServer struct {
	check    func(username, password string) error
	username string
	step     int // 0: want the user name, 1: want the password, 2: done
}

func newLoginServer(check func(username, password string) error) sasl.Server {
	return &loginServer{check: check}
}

func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case 0:
		if response == nil { // no initial response
			return []byte("Username:"), false, nil
		}
		l.username = string(response)
		l.step = 1
		return []byte("Password:"), false, nil
	case 1:
		l.step = 2
		return nil, true, l.check(l.username, string(response))
	}
	return nil, true, sasl.ErrUnexpectedClientResponse
}
