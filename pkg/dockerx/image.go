package dockerx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"github.com/deployd/deployd/internal/engine"
	"github.com/deployd/deployd/pkg/controller"
)

// EnsureImage makes ref present locally according to policy. An image that
// is absent and cannot be pulled wraps controller.ErrNotFound; an
// unreachable engine wraps controller.ErrUnavailable. progress, when not
// nil, receives a pull's status lines (one per layer and state, not every
// byte count).
func (c *Client) EnsureImage(ctx context.Context, ref string, policy controller.PullPolicy, progress func(string)) error {
	if progress == nil {
		progress = func(string) {}
	}
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return fmt.Errorf("ensure image %s: invalid reference: %w", ref, err)
	}
	// "demoapp" means "demoapp:latest"; without the tag a pull would fetch
	// every tag of the repository.
	ref = reference.FamiliarString(reference.TagNameOnly(named))
	log := c.log.WithField("image", ref)
	switch policy {
	case controller.PullNever:
		present, err := c.imagePresent(ctx, ref)
		if err != nil {
			return err
		}
		if !present {
			return fmt.Errorf("image %s not found locally and the pull policy is never: %w", ref, controller.ErrNotFound)
		}
		return nil
	case controller.PullMissing, "":
		present, err := c.imagePresent(ctx, ref)
		if err != nil || present {
			return err
		}
	case controller.PullAlways:
	default:
		return fmt.Errorf("ensure image %s: unknown pull policy %q", ref, policy)
	}

	progress("pulling " + ref)
	pullErr := c.pullWithRetry(ctx, ref, progress)
	if pullErr == nil {
		log.Info("image pulled")
		return nil
	}
	if errors.Is(pullErr, controller.ErrUnavailable) || ctx.Err() != nil {
		return fmt.Errorf("pull image %s: %w", ref, pullErr)
	}
	// Whatever made the pull fail, an image that is not here cannot be
	// run: say so in those words, which is what the deploy log shows.
	present, err := c.imagePresent(ctx, ref)
	if err == nil && !present {
		if errors.Is(pullErr, controller.ErrNotFound) {
			return fmt.Errorf("image %s not found locally and pull failed: %w", ref, pullErr)
		}
		return fmt.Errorf("image %s not found locally and pull failed: %w: %w", ref, controller.ErrNotFound, pullErr)
	}
	return fmt.Errorf("pull image %s: %w", ref, pullErr)
}

func (c *Client) imagePresent(ctx context.Context, ref string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	_, err := c.api.ImageInspect(ctx, ref)
	switch {
	case err == nil:
		return true, nil
	case cerrdefs.IsNotFound(err):
		return false, nil
	default:
		return false, engine.WrapErr("inspect image "+ref, err)
	}
}

// pullWithRetry pulls ref, retrying transient failures with a doubling,
// capped backoff. Failures that retrying cannot fix (the image or
// repository does not exist, access denied, engine unreachable) end it at
// once.
func (c *Client) pullWithRetry(ctx context.Context, ref string, progress func(string)) error {
	wait := c.pullBackoff
	var err error
	for try := 1; ; try++ {
		err = c.pull(ctx, ref, progress)
		if err == nil || permanentPullError(err) || try >= c.pullRetries {
			return err
		}
		c.log.WithField("image", ref).WithField("try", try).WithError(err).Warn("pull failed, retrying")
		progress(fmt.Sprintf("pull failed (try %d of %d), retrying in %s: %v", try, c.pullRetries, wait, err))
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last pull error: %w)", ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(wait*2, maxPullBackoff)
	}
}

func permanentPullError(err error) bool {
	return errors.Is(err, controller.ErrNotFound) || errors.Is(err, controller.ErrUnavailable) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// pull runs one ImagePull and reads its progress stream to the end: the
// engine reports most failures inside the stream, not as the HTTP status.
func (c *Client) pull(ctx context.Context, ref string, progress func(string)) error {
	rc, err := c.api.ImagePull(ctx, ref, image.PullOptions{})
	if err != nil {
		return classifyPullError(err)
	}
	defer func() { _ = rc.Close() }()
	dec := json.NewDecoder(rc)
	// The stream repeats "Downloading" with byte counts many times a
	// second; only changes of a layer's state are worth a line.
	lastStatus := map[string]string{}
	for {
		var msg pullMessage
		if err := dec.Decode(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("read pull progress: %w", err)
		}
		if msg.ErrorDetail != nil || msg.Error != "" {
			text := msg.Error
			if msg.ErrorDetail != nil && msg.ErrorDetail.Message != "" {
				text = msg.ErrorDetail.Message
			}
			return classifyPullError(errors.New(text))
		}
		if msg.Status != "" && lastStatus[msg.ID] != msg.Status {
			lastStatus[msg.ID] = msg.Status
			if msg.ID != "" {
				progress(msg.ID + ": " + msg.Status)
			} else {
				progress(msg.Status)
			}
		}
	}
}

// pullMessage is the part of the engine's JSON progress stream we read.
type pullMessage struct {
	ID          string `json:"id"`
	Status      string `json:"status"`
	Error       string `json:"error"`
	ErrorDetail *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"errorDetail"`
}

func classifyPullError(err error) error {
	if client.IsErrConnectionFailed(err) {
		return fmt.Errorf("%w: %w", controller.ErrUnavailable, err)
	}
	if cerrdefs.IsNotFound(err) {
		return fmt.Errorf("%w: %w", controller.ErrNotFound, err)
	}
	// How registries say an image does not exist (or is not ours to see)
	// when the error arrives only as text inside the pull stream.
	notFoundPhrases := []string{"manifest unknown", "not found", "pull access denied", "repository does not exist", "name unknown"}
	msg := strings.ToLower(err.Error())
	for _, p := range notFoundPhrases {
		if strings.Contains(msg, p) {
			return fmt.Errorf("%w: %w", controller.ErrNotFound, err)
		}
	}
	return err
}

// Images lists the local images of repository ("demoapp",
// "registry.example.com/team/web"), newest first. Each image's Tags are the
// references of that repository only, in familiar form ("demoapp:v2");
// images of the repository known only by digest have no tags.
func (c *Client) Images(ctx context.Context, repository string) ([]controller.Image, error) {
	repo, err := reference.ParseNormalizedNamed(repository)
	if err != nil {
		return nil, fmt.Errorf("list images of %s: invalid repository: %w", repository, err)
	}
	lctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	// The engine's reference filter matches a bare name against every tag
	// of it; the tags are checked again below because the filter is a
	// glob and would also match other repositories' names.
	list, err := c.api.ImageList(lctx, image.ListOptions{
		Filters: filters.NewArgs(filters.Arg("reference", reference.FamiliarName(repo))),
	})
	if err != nil {
		return nil, engine.WrapErr("list images of "+repository, err)
	}
	out := make([]controller.Image, 0, len(list))
	for _, s := range list {
		img := controller.Image{ID: s.ID, Created: time.Unix(s.Created, 0).UTC()}
		ours := false
		for _, t := range s.RepoTags {
			named, err := reference.ParseNormalizedNamed(t)
			if err != nil || named.Name() != repo.Name() {
				continue
			}
			ours = true
			img.Tags = append(img.Tags, reference.FamiliarString(named))
		}
		for _, d := range s.RepoDigests {
			if named, err := reference.ParseNormalizedNamed(d); err == nil && named.Name() == repo.Name() {
				ours = true
			}
		}
		if ours {
			out = append(out, img)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out, nil
}

// RemoveImage removes an image by id, pruning its untagged parents. An
// image a container still uses (or one tagged in several repositories) is
// left alone and the error wraps controller.ErrConflict; a missing image is
// no error.
func (c *Client) RemoveImage(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	_, err := c.api.ImageRemove(ctx, id, image.RemoveOptions{PruneChildren: true})
	switch {
	case err == nil, cerrdefs.IsNotFound(err):
		return nil
	case cerrdefs.IsConflict(err):
		return fmt.Errorf("remove image %s: %w: %w", id, controller.ErrConflict, err)
	default:
		return engine.WrapErr("remove image "+id, err)
	}
}
