// Package cli is the kubinception command line: flags are turned into
// options here and handed to the packages that do the work.
package cli
