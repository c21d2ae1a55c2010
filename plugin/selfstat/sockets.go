package selfstat

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
)

// readSockets fills s.SocketDrops and s.Sockets: the sockets the process
// holds are the "socket:[inode]" links in /proc/<pid>/fd, and the kernel's
// per-socket drops column of /proc/<pid>/net/udp{,6} is matched by inode.
// Unlike the namespace's RcvbufErrors, nobody else's sockets move it.
func (r *Reader) readSockets(s *Snapshot) {
	own, capped, err := r.socketInodes()
	if err != nil {
		r.failUnlessAbsent(FileFD, err)
		return
	}
	s.FDsCapped = capped
	complete, found := !capped, false
	for _, f := range [...]string{FileUDP, FileUDP6} {
		data, err := r.readFile(f, r.proc("net", f))
		if err != nil {
			complete = complete && errors.Is(err, fs.ErrNotExist)
			continue
		}
		if s.Sockets, err = parseNetUDP(data, own, s.Sockets); err != nil {
			r.fail(f)
			complete = false
			continue
		}
		found = true
	}
	sort.Slice(s.Sockets, func(i, j int) bool { return s.Sockets[i].Local < s.Sockets[j].Local })
	if capped {
		r.fail(FileFD)
	}
	if !complete || !found {
		return
	}
	seen := make(map[uint64]uint64, len(s.Sockets))
	for _, sk := range s.Sockets {
		last, ok := r.seen[sk.Inode]
		switch {
		case !ok || sk.Drops < last: // a new socket, or a new one on a reused inode
			r.drops += sk.Drops
		default:
			r.drops += sk.Drops - last
		}
		seen[sk.Inode] = sk.Drops
	}
	r.seen = seen
	s.SocketDrops = Count{r.drops, true}
}

// socketInodes returns the inodes of the sockets among the process's first
// MaxFDs descriptors, and whether there were more.
func (r *Reader) socketInodes() (map[uint64]struct{}, bool, error) {
	dir := r.proc("fd")
	f, err := os.Open(dir)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	own := map[uint64]struct{}{}
	for n := 0; ; {
		names, err := f.Readdirnames(1024)
		for _, name := range names {
			if n == r.maxFDs {
				return own, true, nil
			}
			n++
			// A descriptor closed since the listing has no link: not ours anymore.
			link, _ := os.Readlink(dir + "/" + name)
			if ino, ok := strings.CutPrefix(link, "socket:["); ok {
				if ino, err := strconv.ParseUint(strings.TrimSuffix(ino, "]"), 10, 64); err == nil {
					own[ino] = struct{}{}
				}
			}
		}
		if err == io.EOF {
			return own, false, nil
		}
		if err != nil {
			return nil, false, err
		}
	}
}

// errMalformed says a file is not in the kernel's format.
var errMalformed = errors.New("malformed")

// parseNetUDP appends to out the sockets of /proc/net/udp{,6} text data
// whose inode is in own. The parser is written here rather than taken from
// procfs, whose NetUDP panics on a line of 10 to 12 fields and decodes every
// socket of the namespace where only a few are wanted.
func parseNetUDP(data []byte, own map[uint64]struct{}, out []Socket) ([]Socket, error) {
	// The header names the columns; the kernel has printed the same 13
	// (drops last) since 2.6.
	_, data, ok := bytes.Cut(data, []byte{'\n'})
	if !ok {
		return out, errMalformed
	}
	var buf [16][]byte
	for line := range bytes.Lines(data) {
		f := fields(line, buf[:0])
		if len(f) == 0 {
			continue
		}
		if len(f) < 13 {
			return out, errMalformed
		}
		inode, ok1 := parseDec(f[9])
		drops, ok2 := parseDec(f[12])
		if !ok1 || !ok2 {
			return out, errMalformed
		}
		if _, mine := own[inode]; !mine {
			continue
		}
		local, err := parseSockAddr(f[1])
		if err != nil {
			return out, err
		}
		out = append(out, Socket{Local: local.String(), Inode: inode, Drops: drops})
	}
	return out, nil
}

// parseSockAddr decodes the kernel's "ADDR:PORT" hex: the address is each
// 32-bit word of the network-order address printed as a host-order number.
func parseSockAddr(b []byte) (netip.AddrPort, error) {
	addr, port, ok := bytes.Cut(b, []byte{':'})
	if !ok || len(port) != 4 || (len(addr) != 8 && len(addr) != 32) {
		return netip.AddrPort{}, errMalformed
	}
	p, err := strconv.ParseUint(string(port), 16, 16)
	if err != nil {
		return netip.AddrPort{}, errMalformed
	}
	var ip [16]byte
	for i := 0; i < len(addr); i += 8 {
		w, err := strconv.ParseUint(string(addr[i:i+8]), 16, 32)
		if err != nil {
			return netip.AddrPort{}, errMalformed
		}
		binary.NativeEndian.PutUint32(ip[i/2:], uint32(w))
	}
	if len(addr) == 8 {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[:4])), uint16(p)), nil
	}
	return netip.AddrPortFrom(netip.AddrFrom16(ip), uint16(p)), nil
}

// fields appends the blank-separated fields of line to dst, without
// allocating while dst has room.
func fields(line []byte, dst [][]byte) [][]byte {
	const blanks = " \t\n"
	for {
		line = bytes.TrimLeft(line, blanks)
		if len(line) == 0 {
			return dst
		}
		i := bytes.IndexAny(line, blanks)
		if i < 0 {
			return append(dst, line)
		}
		dst = append(dst, line[:i])
		line = line[i:]
	}
}

// parseDec parses a decimal uint64 without the string conversion
// strconv.ParseUint would need.
func parseDec(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (1<<64-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}
