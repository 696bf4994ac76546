package api

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/user"
	"slices"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Access says who may call the socket, by call class: root (and the
// server's own user) may do everything; members of ChangeGroups may change
// the device and read; members of ReadGroups may only read. Membership is the
// caller's group or supplementary groups at connect time (SO_PEERCRED,
// SO_PEERGROUPS), never looked up by name afterwards.
type Access struct {
	ReadGroups, ChangeGroups []uint32
}

// LookupGroup resolves a group name or number to its gid.
func LookupGroup(name string) (uint32, error) {
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		return uint32(n), nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, fmt.Errorf("group %q: %w", name, err)
	}
	n, err := strconv.ParseUint(g.Gid, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("group %q has gid %q: %w", name, g.Gid, err)
	}
	return uint32(n), nil
}

// Peer is the credentials of a socket's other end.
type Peer struct {
	PID, UID, GID uint32
	Groups        []uint32
}

// soPeerGroups is SO_PEERGROUPS (Linux 4.13) on the architectures tandem
// builds for (asm-generic; it differs on alpha, mips, parisc and sparc).
const soPeerGroups = 59

// PeerOf reads the credentials of c's other end, a Unix socket.
func PeerOf(c net.Conn) (Peer, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return Peer{}, fmt.Errorf("peer credentials: %T is not a Unix socket", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Peer{}, err
	}
	var p Peer
	var cerr error
	err = raw.Control(func(fd uintptr) {
		cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if err != nil {
			cerr = fmt.Errorf("SO_PEERCRED: %w", err)
			return
		}
		p.PID, p.UID, p.GID = uint32(cred.Pid), cred.Uid, cred.Gid
		p.Groups, cerr = peerGroups(int(fd))
	})
	if err == nil {
		err = cerr
	}
	return p, err
}

func peerGroups(fd int) ([]uint32, error) {
	buf := make([]uint32, 64)
	for {
		n := uint32(len(buf) * 4)
		_, _, errno := syscall.Syscall6(syscall.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, soPeerGroups,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
		switch {
		case errno == syscall.ERANGE && len(buf) < 1<<16:
			buf = make([]uint32, max(int(n/4), 2*len(buf)))
			continue
		case errno == syscall.ENOPROTOOPT:
			return nil, nil // an old kernel: the primary group only
		case errno != 0:
			return nil, fmt.Errorf("SO_PEERGROUPS: %w", errno)
		}
		return buf[:n/4], nil
	}
}

// Caller is what p may do under a.
func (a Access) Caller(p Peer) Caller {
	in := func(gids []uint32) bool {
		return slices.Contains(gids, p.GID) || slices.ContainsFunc(p.Groups, func(g uint32) bool { return slices.Contains(gids, g) })
	}
	c := Caller{Name: fmt.Sprintf("uid %d (pid %d)", p.UID, p.PID)}
	c.Root = p.UID == 0 || p.UID == uint32(os.Geteuid())
	c.Change = c.Root || in(a.ChangeGroups)
	c.Read = c.Change || in(a.ReadGroups)
	return c
}

// ConnContext is an http.Server's ConnContext for the socket: it reads the
// peer's credentials once per connection and carries its Caller.
func (a Access) ConnContext(ctx context.Context, c net.Conn) context.Context {
	p, err := PeerOf(c)
	if err != nil {
		return WithCaller(ctx, Caller{Name: "a caller whose credentials are unreadable"})
	}
	return WithCaller(ctx, a.Caller(p))
}
