package main

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/tools/sdk"
)

func TestToText(t *testing.T) {
	tests := []struct {
		name, html, text string
		links            []Link
	}{
		{"empty", "", "", nil},
		{"plain text", "hello   world", "hello world", nil},
		{"paragraphs", "<p>one</p><p>two</p>", "one\ntwo", nil},
		{"whitespace collapsed and trimmed", "  <div>\n\t a \n  b  </div>  ", "a b", nil},
		{"br", "a<br>b<br/><br>c", "a\nb\nc", nil},
		{"inline stays inline", "<p>un<b>bold</b>ed <i>it</i></p>", "unbolded it", nil},
		{"headings and lists", "<h1>Title</h1><ul><li>x</li><li>y</li></ul><h2>Sub</h2>text", "Title\nx\ny\nSub\ntext", nil},
		{"table", "<table><tr><th>k</th><th>v</th></tr><tr><td>a</td><td>1</td></tr></table>", "k v\na 1", nil},
		{"skipped content", `<html><head><title>T</title><style>p{}</style><script>var x="<a href=/s>s</a>"</script></head>` +
			`<body><noscript>enable js <a href="/n">n</a></noscript><template><p>tpl<a href="/t">t</a></p></template><p>seen</p><script>alert(1)</script></body></html>`,
			"seen", nil},
		{"comments and doctype", "<!DOCTYPE html><!-- hidden -->text<!-- more -->", "text", nil},
		{"entities", "<p>a &amp; b &lt;c&gt; &nbsp;d&eacute;</p>", "a & b <c> dé", nil},
		{"links in order", `<p>See <a href="https://example.org/a?x=1&amp;y=2">the  <b>A</b>
			page</a> and <a href="../rel">rel</a>.</p><a href="">empty</a><a name="anchor">no href</a>`,
			"See the A page and rel.\nemptyno href",
			[]Link{{"the A page", "https://example.org/a?x=1&y=2"}, {"rel", "../rel"}, {"empty", ""}}},
		{"href as written", `<a href="  javascript:alert(1) ">x</a><a href=/p#f>y</a>`, "xy",
			[]Link{{"x", "  javascript:alert(1) "}, {"y", "/p#f"}}},
		{"link with blocks", `<a href="/c"><div>card</div><div>body</div></a>`, "card\nbody", []Link{{"card body", "/c"}}},
		{"link without text", `<a href="/i"><img src="x.png" alt="pic"></a>`, "", []Link{{"", "/i"}}},
		{"unclosed tags", "<div><p>a<p>b<li>c", "a\nb\nc", nil},
		{"unicode", "<p>héllo\u00a0wörld 日本</p>", "héllo wörld 日本", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := toText(context.Background(), Input{HTML: tt.html})
			if err != nil {
				t.Fatal(err)
			}
			if out.Text != tt.text {
				t.Errorf("text = %q, want %q", out.Text, tt.text)
			}
			want := tt.links
			if want == nil {
				want = []Link{}
			}
			if !reflect.DeepEqual(out.Links, want) {
				t.Errorf("links = %q, want %q", out.Links, want)
			}
		})
	}
}

func TestThroughSDK(t *testing.T) {
	out, err := sdk.Handle(toText).Call(context.Background(), []byte(`{"html": "<p>x</p>"}`))
	if err != nil || string(out) != `{"text":"x","links":[]}`+"\n" {
		t.Fatalf("got %q, %v", out, err)
	}
	if _, err := sdk.Handle(toText).Call(context.Background(), []byte(`{"html": "x", "base": "/"}`)); err == nil ||
		!strings.Contains(err.Error(), `unknown field "base"`) {
		t.Fatalf("unknown field: %v", err)
	}
}

func TestBounds(t *testing.T) {
	if _, err := toText(context.Background(), Input{HTML: strings.Repeat("x", MaxHTMLBytes+1)}); err == nil ||
		!strings.Contains(err.Error(), "too_large") {
		t.Fatalf("err = %v, want too_large", err)
	}
	// Deep nesting neither overflows the stack nor hangs.
	deep := strings.Repeat("<div><span>", 50_000) + "x" + strings.Repeat("</span></div>", 50_000)
	out, err := toText(context.Background(), Input{HTML: deep})
	if err == nil && !strings.Contains(out.Text, "x") {
		t.Fatalf("deep document lost its text: %q", out.Text)
	}
	// Many text nodes inside one link stay linear.
	many := `<a href="/m">` + strings.Repeat("<b>w</b> ", 100_000) + `</a>`
	out, err = toText(context.Background(), Input{HTML: many})
	if err != nil || len(out.Links) != 1 || len(out.Links[0].Text) != 2*100_000-1 {
		t.Fatalf("many nodes: %v, %d links", err, len(out.Links))
	}
	b, _ := json.Marshal(out)
	if len(b) == 0 {
		t.Fatal("no output")
	}
}

func BenchmarkToText(b *testing.B) {
	page := strings.Repeat(`<div class="item"><h2>Title</h2><p>Some <b>text</b> with a <a href="/x">link</a>.</p></div>`, 200)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := toText(context.Background(), Input{HTML: page}); err != nil {
			b.Fatal(err)
		}
	}
}
