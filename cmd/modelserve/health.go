package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// newHealthCmd asks a running server whether it is ready: an image's
// HEALTHCHECK, which cannot count on curl being in the base.
func newHealthCmd() *cobra.Command {
	var (
		host, tokenFile, caFile string
		port                    int
		useTLS                  bool
		timeout                 time.Duration
	)
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Exit 0 if the server on --port is ready, 1 if not",
		Long: `Exit 0 if the server on --port is ready, 1 if not. Against a server
started with --tls-cert, give --tls (and --ca for a certificate your
system does not trust); against one started with --auth-health, give
--token-file or MODELSERVE_TOKEN.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			scheme := "http"
			client := &http.Client{Timeout: timeout}
			if useTLS || caFile != "" {
				scheme = "https"
				cfg := &tls.Config{MinVersion: tls.VersionTLS12}
				if caFile != "" {
					pem, err := os.ReadFile(caFile)
					if err != nil {
						return fmt.Errorf("--ca: %w", err)
					}
					cfg.RootCAs = x509.NewCertPool()
					if !cfg.RootCAs.AppendCertsFromPEM(pem) {
						return fmt.Errorf("--ca %s holds no PEM certificate", caFile)
					}
				}
				client.Transport = &http.Transport{TLSClientConfig: cfg}
			}
			token, err := readToken(tokenFile)
			if err != nil {
				return err
			}
			url := scheme + "://" + net.JoinHostPort(host, strconv.Itoa(port)) + "/healthcheck"
			req, err := http.NewRequestWithContext(cmd.Context(), http.MethodGet, url, nil)
			if err != nil {
				return err
			}
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := client.Do(req)
			if err != nil {
				return fmt.Errorf("not ready: %w", err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("not ready: %s answered %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
			}
			fmt.Fprintln(cmd.OutOrStdout(), "ready")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&host, "host", "127.0.0.1", "server address")
	f.IntVar(&port, "port", 8080, "server port (MODELSERVE_PORT, as serve reads it)")
	f.DurationVar(&timeout, "timeout", 3*time.Second, "how long to wait for the answer")
	f.BoolVar(&useTLS, "tls", false, "ask over HTTPS")
	f.StringVar(&caFile, "ca", "", "trust the server certificates this CA bundle (PEM) signed; implies --tls")
	f.StringVar(&tokenFile, "token-file", "", "send the bearer token this file holds (default: MODELSERVE_TOKEN, if set)")
	return cmd
}

// readToken is the bearer token a client sends: from the file, else from
// MODELSERVE_TOKEN. A file keeps it out of the process list.
func readToken(file string) (string, error) {
	if file == "" {
		return strings.TrimSpace(os.Getenv("MODELSERVE_TOKEN")), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" || strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("--token-file %s: want one token, alone", file)
	}
	return tok, nil
}
