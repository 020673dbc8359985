// Package reqbody reads request bodies on a fiber app that streams them
// (fiber.Config.StreamRequestBody). fasthttp then commits no memory for a
// body before a handler asks for it, so a route can authenticate its
// caller first and only then read, up to the route's own limit.
//
// Without streaming, fasthttp reserves the whole announced Content-Length
// as soon as the headers arrive, before any middleware runs: a thousand
// connections announcing a megabyte each cost a gigabyte, anonymously.
package reqbody

import (
	"bytes"
	"fmt"
	"io"

	"github.com/gofiber/fiber/v2"
)

// prefetch is the most fasthttp reads of a streamed body before the
// handler runs (readBodyWithStreaming in fasthttp 1.51).
const prefetch = 8 << 10

// Read returns the request's body, at most limit bytes, and leaves it as
// the request's plain body so that c.Body() and form parsing see it. A
// body announced or found to be longer is a 413 *fiber.Error, and any
// Content-Encoding a 415 one: fiber's c.Body() would otherwise inflate a
// small compressed body into a large one, before the caller is known.
// Either way the connection is closed after the answer, since the unread
// rest of the body must never be parsed as the next request.
func Read(c *fiber.Ctx, limit int) ([]byte, error) {
	req := c.Request()
	if enc := req.Header.Peek(fiber.HeaderContentEncoding); len(enc) > 0 && !bytes.EqualFold(enc, []byte("identity")) {
		c.Context().SetConnectionClose()
		return nil, fiber.NewError(fiber.StatusUnsupportedMediaType, "compressed request bodies are not accepted")
	}
	if n := req.Header.ContentLength(); n > limit {
		c.Context().SetConnectionClose()
		return nil, tooLarge(limit)
	}
	if !req.IsBodyStream() {
		// Not streamed: app.Test, or read already.
		b := req.Body()
		if len(b) > limit {
			return nil, tooLarge(limit)
		}
		return b, nil
	}
	buf := bytes.NewBuffer(make([]byte, 0, min(limit, prefetch)+1))
	// One byte past the limit tells a chunked body that is too long from
	// one that is exactly the limit.
	_, err := io.Copy(buf, io.LimitReader(req.BodyStream(), int64(limit)+1))
	if err != nil {
		c.Context().SetConnectionClose()
		return nil, fiber.NewError(fiber.StatusBadRequest, fmt.Sprintf("read request body: %v", err))
	}
	if buf.Len() > limit {
		c.Context().SetConnectionClose()
		return nil, tooLarge(limit)
	}
	// SetBody ends the stream: the body now lives in the request's own
	// buffer, and the connection may serve the next request.
	req.SetBody(buf.Bytes())
	return req.Body(), nil
}

// Middleware reads the body with Read before the next handler, which may
// then use c.Body(). Put it after authentication.
func Middleware(limit int) fiber.Handler {
	return func(c *fiber.Ctx) error {
		if _, err := Read(c, limit); err != nil {
			return err
		}
		return c.Next()
	}
}

// CloseUnread is the app's outermost middleware: after the handlers ran,
// a body that none of them read (a refused caller, a route without a
// body) is left unread on the connection, and fasthttp 1.51 would parse
// its bytes as the next request. The connection is closed instead.
func CloseUnread(c *fiber.Ctx) error {
	err := c.Next()
	req := c.Request()
	if req.IsBodyStream() && req.Header.ContentLength() != 0 {
		c.Context().SetConnectionClose()
	}
	return err
}

func tooLarge(limit int) error {
	return fiber.NewError(fiber.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", limit))
}
