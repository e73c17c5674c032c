package variants

import (
	"fmt"
	"io"
	"os"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Limits that keep a hostile or mistaken file (a device, a binary, a
// generated monster) from exhausting memory, time or the stack. The
// project's variants.hcl is 5.5 KiB, 753 tokens, and nests less than 10
// deep. Parsing and evaluating HCL costs up to 450 bytes of memory per
// byte of input (a 1 MiB list of numbers: 450 MiB), so both the size and
// the number of tokens are bounded.
const (
	// MaxFileSize is the largest variants file read.
	MaxFileSize = 256 << 10
	// maxTokens bounds the tokens (words, numbers, operators, brackets) of
	// one file.
	maxTokens = 50000
	// maxNesting bounds how deep blocks, brackets, templates and operator
	// chains may nest (see nesting), and so the parser's and evaluator's
	// recursion.
	maxNesting = 100
	// maxChain bounds chains of variables referring to variables and of
	// variants inheriting from variants.
	maxChain = 100
	// maxVariants bounds the resolved matrix (and setproduct's result): a
	// three-line matrix of three axes of 100 values would be a million
	// variants, gigabytes of memory.
	maxVariants = 10000
	// maxInvalidTokens: more characters HCL does not use than this, and
	// the file is not parsed at all (it is not HCL).
	maxInvalidTokens = 100
)

// readSource reads a variants file: a regular file of at most MaxFileSize
// bytes. Devices, pipes and directories are refused before they are read.
func readSource(path string) ([]byte, *hcl.Diagnostic) {
	fail := func(format string, args ...any) ([]byte, *hcl.Diagnostic) {
		return nil, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Cannot read variants file", Detail: fmt.Sprintf(format, args...)}
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fail("%v.", err)
	}
	if !fi.Mode().IsRegular() {
		return fail("%s is not a regular file (%s): give the path of a variants file.", path, fileKind(fi.Mode()))
	}
	if fi.Size() > MaxFileSize {
		return fail("%s is %s; a variants file may be at most %s.", path, sizeString(fi.Size()), sizeString(MaxFileSize))
	}
	f, err := os.Open(path)
	if err != nil {
		return fail("%v.", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return fail("%v.", err)
	}
	if len(b) > MaxFileSize {
		return fail("%s grew past %s while being read; a variants file may be at most %s.", path, sizeString(MaxFileSize), sizeString(MaxFileSize))
	}
	return b, nil
}

func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case m&os.ModeDevice != 0:
		return "a block device"
	case m&os.ModeNamedPipe != 0:
		return "a named pipe"
	case m&os.ModeSocket != 0:
		return "a socket"
	}
	return "not a plain file"
}

func sizeString(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

// checkSource vets a source before it is parsed: its size, its encoding,
// and how deep it nests, so that parsing and evaluating it are bounded in
// memory and stack. It returns at most one diagnostic.
func checkSource(s Source) hcl.Diagnostics {
	at := func(pos hcl.Pos) *hcl.Range {
		return &hcl.Range{Filename: s.Name, Start: pos, End: hcl.Pos{Line: pos.Line, Column: pos.Column + 1, Byte: pos.Byte + 1}}
	}
	if len(s.Data) > MaxFileSize {
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Variants file too large",
			Detail:   fmt.Sprintf("The file is %s; a variants file may be at most %s.", sizeString(int64(len(s.Data))), sizeString(MaxFileSize)),
		}}
	}
	if !utf8.Valid(s.Data) {
		pos := firstInvalidUTF8(s.Data)
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Not a variants file",
			Detail:   "The file is not UTF-8 text (this byte is not UTF-8; is it a binary file?).",
			Subject:  at(pos),
		}}
	}
	tokens, _ := hclsyntax.LexConfig(s.Data, s.Name, hcl.InitialPos)
	if d := checkTokens(tokens); d != nil {
		d.Subject = at(d.Subject.Start)
		return hcl.Diagnostics{d}
	}
	return nil
}

// firstInvalidUTF8 is the position of the first byte that is not UTF-8.
func firstInvalidUTF8(b []byte) hcl.Pos {
	pos := hcl.InitialPos
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n == 1 {
			return pos
		}
		pos.Byte += n
		pos.Column++
		if r == '\n' {
			pos.Line, pos.Column = pos.Line+1, 1
		}
		b = b[n:]
	}
	return pos
}

// checkTokens finds files that are not HCL at all (many characters HCL
// does not use) and files that nest deeper than maxNesting.
func checkTokens(tokens hclsyntax.Tokens) *hcl.Diagnostic {
	invalid := 0
	var firstInvalid *hcl.Range
	n := newNesting()
	for i := range tokens {
		tok := &tokens[i]
		switch tok.Type {
		case hclsyntax.TokenInvalid, hclsyntax.TokenBadUTF8, hclsyntax.TokenNil:
			if invalid++; invalid == 1 {
				firstInvalid = &tok.Range
			}
			if invalid > maxInvalidTokens {
				return &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Not a variants file",
					Detail:   fmt.Sprintf("The file has more than %d characters HCL does not use, the first one here: it is not an HCL file.", maxInvalidTokens),
					Subject:  firstInvalid,
				}
			}
		}
		if n.add(tok) > maxNesting {
			return &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Nesting too deep",
				Detail:   fmt.Sprintf("Blocks, brackets, templates and operators nest more than %d deep here; a variants file never needs that. Split the expression, or use variables.", maxNesting),
				Subject:  &tok.Range,
			}
		}
	}
	if len(tokens) > maxTokens {
		return &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Variants file too large",
			Detail:   fmt.Sprintf("The file has %d tokens (words, numbers, operators, brackets); a variants file may have at most %d.", len(tokens), maxTokens),
			Subject:  &tokens[maxTokens].Range,
		}
	}
	return nil
}

// nesting measures, token by token, an upper bound of the depth the parser
// and the evaluator recurse to. Every open group (block body, brackets,
// quotes, heredocs, template sequences) counts 1, plus the operators seen
// in it since its last separator: `a + b + c` and `!!x` nest one level per
// operator, `a ? b : c ? d : e` one per '?'. A comma ends a sub-expression
// everywhere, a newline in bodies and objects (elsewhere it does not: the
// parser skips newlines inside brackets).
type nesting struct {
	stack []group
	depth int
	prev  hclsyntax.TokenType
}

type group struct {
	open hclsyntax.TokenType
	ops  int
}

func newNesting() *nesting { return &nesting{stack: []group{{open: hclsyntax.TokenNil}}, depth: 1} }

var closes = map[hclsyntax.TokenType]hclsyntax.TokenType{
	hclsyntax.TokenCBrace:         hclsyntax.TokenOBrace,
	hclsyntax.TokenCBrack:         hclsyntax.TokenOBrack,
	hclsyntax.TokenCParen:         hclsyntax.TokenOParen,
	hclsyntax.TokenCQuote:         hclsyntax.TokenOQuote,
	hclsyntax.TokenCHeredoc:       hclsyntax.TokenOHeredoc,
	hclsyntax.TokenTemplateSeqEnd: hclsyntax.TokenTemplateInterp,
}

func isOperator(t hclsyntax.TokenType) bool {
	switch t {
	case hclsyntax.TokenPlus, hclsyntax.TokenMinus, hclsyntax.TokenStar, hclsyntax.TokenSlash,
		hclsyntax.TokenPercent, hclsyntax.TokenAnd, hclsyntax.TokenOr, hclsyntax.TokenBang,
		hclsyntax.TokenEqualOp, hclsyntax.TokenNotEqual, hclsyntax.TokenLessThan,
		hclsyntax.TokenLessThanEq, hclsyntax.TokenGreaterThan, hclsyntax.TokenGreaterThanEq,
		hclsyntax.TokenQuestion, hclsyntax.TokenDot, hclsyntax.TokenOBrack:
		return true
	}
	return false
}

// add accounts for one token and returns the depth after it.
func (n *nesting) add(tok *hclsyntax.Token) int {
	top := &n.stack[len(n.stack)-1]
	defer func() { n.prev = tok.Type }()
	if isOperator(tok.Type) { // '[' also indexes: a[x][y] nests
		top.ops++
		n.depth++
	}
	switch tok.Type {
	case hclsyntax.TokenOBrace, hclsyntax.TokenOBrack, hclsyntax.TokenOParen, hclsyntax.TokenOQuote,
		hclsyntax.TokenOHeredoc, hclsyntax.TokenTemplateInterp, hclsyntax.TokenTemplateControl:
		n.stack = append(n.stack, group{open: tok.Type})
		n.depth++
	case hclsyntax.TokenComma:
		n.depth -= top.ops
		top.ops = 0
	case hclsyntax.TokenNewline:
		if top.open == hclsyntax.TokenNil || top.open == hclsyntax.TokenOBrace {
			n.depth -= top.ops
			top.ops = 0
		}
	case hclsyntax.TokenIdent:
		n.directive(string(tok.Bytes))
	default:
		n.close(tok.Type)
	}
	return n.depth
}

// close pops the innermost group if tok closes it; a closer that does not
// match is left to the parser to report.
func (n *nesting) close(t hclsyntax.TokenType) {
	open, ok := closes[t]
	top := n.stack[len(n.stack)-1]
	if t == hclsyntax.TokenTemplateSeqEnd && top.open == hclsyntax.TokenTemplateControl {
		open = top.open
	}
	if !ok || len(n.stack) == 1 || top.open != open {
		return
	}
	n.depth -= 1 + top.ops
	n.stack = n.stack[:len(n.stack)-1]
}

// directive counts template if/for directives: their bodies nest inside
// them until endif/endfor, in the template around the directive.
func (n *nesting) directive(word string) {
	if n.prev != hclsyntax.TokenTemplateControl || len(n.stack) < 3 {
		return
	}
	tmpl := &n.stack[len(n.stack)-2]
	switch word {
	case "if", "for":
		tmpl.ops++
		n.depth++
	case "endif", "endfor":
		if tmpl.ops > 0 {
			tmpl.ops--
			n.depth--
		}
	}
}
