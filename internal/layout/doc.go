// Package layout holds no code: its test enforces the dependency rules of
// DESIGN.md and STYLE.md over the whole module (go list), failing on any
// forbidden edge.
package layout
