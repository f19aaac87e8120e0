package main

import (
	"context"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/airlock-dev/airlock/tools/sdk"
	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// MaxHTMLBytes bounds the document (the executor caps arguments at 1 MiB).
const MaxHTMLBytes = 2 << 20

// maxOpenLinks bounds how many links collect text at once.
const maxOpenLinks = 8

// Input is the html.to_text arguments.
type Input struct {
	HTML string `json:"html"`
}

// Link is one <a href> of the document.
type Link struct {
	Text string `json:"text"`
	Href string `json:"href"`
}

// Output is the html.to_text result.
type Output struct {
	Text  string `json:"text"`
	Links []Link `json:"links"`
}

// skipped elements contribute neither text nor links.
var skipped = map[atom.Atom]bool{
	atom.Script: true, atom.Style: true, atom.Noscript: true, atom.Template: true, atom.Head: true,
	// An iframe's content is fallback markup parsed as raw text, never shown.
	atom.Iframe: true,
}

// blocks start and end a line.
var blocks = map[atom.Atom]bool{
	atom.Address: true, atom.Article: true, atom.Aside: true, atom.Blockquote: true, atom.Body: true,
	atom.Br: true, atom.Caption: true, atom.Dd: true, atom.Details: true, atom.Dialog: true, atom.Div: true,
	atom.Dl: true, atom.Dt: true, atom.Fieldset: true, atom.Figcaption: true, atom.Figure: true,
	atom.Footer: true, atom.Form: true, atom.H1: true, atom.H2: true, atom.H3: true, atom.H4: true,
	atom.H5: true, atom.H6: true, atom.Header: true, atom.Hgroup: true, atom.Hr: true, atom.Li: true,
	atom.Main: true, atom.Nav: true, atom.Ol: true, atom.P: true, atom.Pre: true, atom.Section: true,
	atom.Summary: true, atom.Table: true, atom.Tbody: true, atom.Tfoot: true,
	atom.Thead: true, atom.Tr: true, atom.Ul: true, atom.Html: true, atom.Legend: true, atom.Option: true,
}

// cells are separated by a space on their row.
var cells = map[atom.Atom]bool{atom.Td: true, atom.Th: true}

// toText parses in.HTML and extracts its visible text and links.
func toText(_ context.Context, in Input) (Output, error) {
	if len(in.HTML) > MaxHTMLBytes {
		return Output{}, sdk.Errorf("too_large", "html is %d bytes, over the limit of %d", len(in.HTML), MaxHTMLBytes)
	}
	doc, err := html.Parse(strings.NewReader(in.HTML))
	if err != nil {
		// x/net/html only fails on pathological input (such as nesting past
		// its stack bound); say so rather than return partial text.
		return Output{}, sdk.Errorf("bad_html", "html cannot be parsed: %w", err)
	}
	var w writer
	out := Output{Links: []Link{}}
	// An explicit stack rather than recursion: documents can nest deeply.
	type frame struct {
		n    *html.Node
		exit bool // the node's children are done
		link int  // index+1 of the link this <a> opened, or 0
	}
	stack := []frame{{n: doc}}
	// open holds the text of the links being collected, innermost last; a
	// link's frame knows its index in out.Links.
	var open []*strings.Builder
	sep := func() {
		for _, b := range open {
			b.WriteByte(' ')
		}
	}
	for len(stack) > 0 {
		f := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		n := f.n
		if f.exit {
			if blocks[n.DataAtom] {
				w.lineBreak()
				sep()
			}
			if f.link > 0 {
				out.Links[f.link-1].Text = collapse(open[len(open)-1].String())
				open = open[:len(open)-1]
			}
			continue
		}
		switch n.Type {
		case html.TextNode:
			w.text(n.Data)
			for _, b := range open {
				b.WriteString(n.Data)
			}
			continue
		case html.ElementNode:
			if skipped[n.DataAtom] {
				continue
			}
			if blocks[n.DataAtom] {
				w.lineBreak()
				sep()
			}
			if cells[n.DataAtom] {
				w.space()
				sep()
			}
		case html.DocumentNode:
		default: // comments, doctypes
			continue
		}
		exit := frame{n: n, exit: true}
		// Links are HTML <a href> only; the parser does not nest them, and the
		// bound on open links keeps foreign content from making it quadratic.
		if n.Type == html.ElementNode && n.DataAtom == atom.A && n.Namespace == "" && len(open) < maxOpenLinks {
			if href, ok := attr(n, "href"); ok {
				out.Links = append(out.Links, Link{Href: href})
				exit.link = len(out.Links)
				open = append(open, new(strings.Builder))
			}
		}
		stack = append(stack, exit)
		// Push children last-first so they pop in document order.
		for c := n.LastChild; c != nil; c = c.PrevSibling {
			stack = append(stack, frame{n: c})
		}
	}
	out.Text = w.String()
	return out, nil
}

// attr returns the value of the attribute key of n.
func attr(n *html.Node, key string) (string, bool) {
	for _, a := range n.Attr {
		if a.Namespace == "" && a.Key == key {
			return a.Val, true
		}
	}
	return "", false
}

// collapse replaces every run of white space with one space and trims.
func collapse(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// writer accumulates text with white space collapsed: runs of spaces become
// one space, line breaks never double, and lines are trimmed.
type writer struct {
	b            strings.Builder
	pendingSpace bool
	pendingBreak bool
}

func (w *writer) text(s string) {
	for len(s) > 0 {
		r, size := utf8.DecodeRuneInString(s)
		s = s[size:]
		if unicode.IsSpace(r) {
			w.space()
			continue
		}
		if w.b.Len() > 0 {
			if w.pendingBreak {
				w.b.WriteByte('\n')
			} else if w.pendingSpace {
				w.b.WriteByte(' ')
			}
		}
		w.pendingBreak, w.pendingSpace = false, false
		w.b.WriteRune(r)
	}
}

func (w *writer) space()     { w.pendingSpace = true }
func (w *writer) lineBreak() { w.pendingBreak = true }

func (w *writer) String() string { return w.b.String() }
