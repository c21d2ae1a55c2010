package main

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"strings"
)

// pprofTopRows splits the table of `pprof -top` into each row's fields
// (flat flat% sum% cum cum% name...), skipping the header lines above it.
func pprofTopRows(out []byte) [][]string {
	var rows [][]string
	sc := bufio.NewScanner(bytes.NewReader(out))
	inRows := false
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 5 && f[0] == "flat":
			inRows = true
		case inRows && len(f) >= 6:
			rows = append(rows, f)
		}
	}
	return rows
}

// copyFile copies from to an executable file to.
func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}
