// Command mockllm runs the mock LLM provider of package chaos/mock as a
// standalone process, so Sluice can be exercised by hand or from scripts
// without real Azure OpenAI or OpenAI accounts. It reads a YAML file
// (-config) listing regions, each with its listen address, dialect, API key
// and deployments, and starts one HTTP server per region; without -config it
// serves a built-in development setup of two Azure regions, eastus on
// 127.0.0.1:9101 and swedencentral on 127.0.0.1:9102, each hosting
// gpt-4o-mini and text-embedding-3-small. Faults and statistics are
// controlled through each region's /mock/ endpoints. It logs with log/slog,
// never logs API keys, and shuts down gracefully on SIGINT or SIGTERM.
//
// Usage:
//
//	mockllm [-config file.yaml] [-seed n] [-log-level info] [-print-config]
package main
