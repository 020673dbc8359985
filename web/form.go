package web

import (
	"errors"
	"mime"
	"net/url"

	"github.com/gofiber/fiber/v2"

	"github.com/deployd/deployd/internal/reqbody"
	"github.com/deployd/deployd/pkg/controller"
)

// readForm returns the fields of a posted application/x-www-form-urlencoded
// body of at most limit bytes. Unlike fiber's FormValue it never reads the
// query string: a token there would end up in proxies' access logs. Errors
// are *controller.Error values.
func readForm(c *fiber.Ctx, limit int) (url.Values, error) {
	if ct := c.Get(fiber.HeaderContentType); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != fiber.MIMEApplicationForm {
			return nil, controller.Errorf(controller.EINVALID, "post the form as %s", fiber.MIMEApplicationForm)
		}
	}
	b, err := reqbody.Read(c, limit)
	if err != nil {
		msg := "unreadable form"
		var fe *fiber.Error
		if errors.As(err, &fe) {
			msg = fe.Message
		}
		return nil, controller.Errorf(controller.EINVALID, "%s", msg)
	}
	form, err := url.ParseQuery(string(b))
	if err != nil {
		return nil, controller.Errorf(controller.EINVALID, "malformed form")
	}
	return form, nil
}
