// Package e2e holds sekisho's end-to-end tests. They build the real binary,
// start `sekisho serve` as a subprocess on loopback, and drive it the way a
// person or a program would: a real headless Chromium (through chromedp) that
// signs in, lands on the built-in whoami app and signs out, and a plain
// net/http client that signs in by posting the form.
//
// The browser test needs Debian's `chromium` (or the binary named by
// SEKISHO_CHROMIUM). Without it the test skips, except when CI is set, where
// it fails. SEKISHO_E2E_SCREENSHOTS=DIR also copies the screenshots the test
// takes into DIR.
//
// The package has no code of its own; everything is in the _test files.
package e2e
