package controller

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"
)

// BackupDir is where the backup volume is mounted in backup one-offs.
const BackupDir = "/backups"

// DefaultBackupCommand returns the command that makes a PostgreSQL dump in
// pg_dump's custom format (the one pg_restore reads) at
// $DEPLOYD_BACKUP_FILE; the database comes from the libpq variables
// (PGHOST, PGUSER, PGDATABASE, PGPASSWORD).
func DefaultBackupCommand() []string {
	return []string{"sh", "-c", `pg_dump --format=custom --file "$DEPLOYD_BACKUP_FILE"`}
}

// pruneScript keeps the newest $3 backups of service $2 in directory $1
// and prints "kept N". Names are <service>-<deployment id>.dump, and ids
// begin with their UTC creation time, so name order is time order; the
// digit after the dash keeps service "web" from matching "web-api"'s
// files. The glob sorts in the C locale (LC_ALL is set for it), oldest
// first. Only sh and rm are needed, which every image with a shell has.
const pruneScript = `set -eu
cd "$1"
total=0
for f in "$2"-[0-9]*.dump; do
	if [ -f "$f" ]; then total=$((total + 1)); fi
done
drop=$((total - $3))
for f in "$2"-[0-9]*.dump; do
	if [ "$drop" -le 0 ]; then break; fi
	if [ -f "$f" ]; then rm -f -- "$f"; drop=$((drop - 1)); fi
done
if [ "$total" -gt "$3" ]; then total=$3; fi
echo "kept $total"
`

// backupOutputLimit is how much of the backup command's output the
// deployment record keeps (the end, where errors are).
const backupOutputLimit = 16 << 10

// backupEnv is the backup one-off's environment: its env file, then its
// env, like the service's own (see specEnv). Nil when the service has no
// backup.
func (r *deployRun) backupEnv() ([]string, error) {
	b := r.spec.Backup
	if b == nil {
		return nil, nil
	}
	env, err := mergeEnv(b.EnvFile, b.Env)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	return env, nil
}

// backup runs the backup step: the configured command dumps the database
// into the volume, deployd checks the file is there and not empty, then
// removes the service's backups beyond the newest Keep.
//
// The check asks the runtime for the file's size rather than running
// anything in the image, so a failed or empty dump is caught whatever the
// image holds. Removing files does need a process in a container: a
// second one-off runs pruneScript with the image's sh. Pruning is
// housekeeping: once the backup is made and checked, a failed prune is
// reported in the step's message and logged, and the deploy goes on.
func (r *deployRun) backup(ctx context.Context, env []string, s *Step) (string, error) {
	b := r.spec.Backup
	if b == nil {
		return "no backup configured", errSkipped
	}
	tctx, cancel := context.WithTimeout(ctx, b.Timeout)
	defer cancel()
	timedOut := func(err error) error {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return fmt.Errorf("backup timed out after %s", b.Timeout)
		}
		return err
	}

	if err := r.rt.EnsureImage(tctx, b.Image, r.spec.Pull, r.progress); err != nil {
		return "", timedOut(fmt.Errorf("backup image: %w", err))
	}
	name := backupFileName(r.spec.Name, r.d.ID)
	file := path.Join(BackupDir, name)
	spec := r.backupOneOff("backup", b.Command, append(env[:len(env):len(env)], "DEPLOYD_BACKUP_FILE="+file))
	res, err := r.rt.RunOneOff(tctx, spec)
	s.Output = tail(res.Output, backupOutputLimit)
	for _, line := range OutputLines(s.Output) {
		r.logLine("%s", line)
	}
	switch {
	case err != nil:
		r.removeFailedBackup(ctx, file)
		return "", timedOut(err)
	case res.ExitCode != 0:
		r.removeFailedBackup(ctx, file)
		return "", fmt.Errorf("backup command %q exited with code %d", strings.Join(b.Command, " "), res.ExitCode)
	}

	size, err := r.rt.FileSize(tctx, r.backupOneOff("backupcheck", nil, nil), file)
	switch {
	case errors.Is(err, ErrNotFound):
		return "", fmt.Errorf("backup command succeeded but wrote no %s", file)
	case err != nil:
		return "", timedOut(fmt.Errorf("check %s: %w", file, err))
	case size == 0:
		r.removeFailedBackup(ctx, file)
		return "", fmt.Errorf("backup file %s is empty", file)
	}
	msg := fmt.Sprintf("backup %s, %s", name, formatBytes(size))

	kept, err := r.pruneBackups(tctx)
	if err != nil {
		r.log.WithError(timedOut(err)).Warn("old backups not pruned")
		return msg + fmt.Sprintf("; old backups not pruned: %v", timedOut(err)), nil
	}
	return msg + fmt.Sprintf(", kept %d", kept), nil
}

// backupOneOff is a one-off of the backup image on the service's network
// with the backup volume mounted. The service's limits apply, except its
// user: the backup runs as the backup image's user, who must be able to
// write to the volume.
func (r *deployRun) backupOneOff(role string, cmd, env []string) OneOffSpec {
	limits := r.spec.Limits
	limits.User = ""
	return OneOffSpec{
		Name:       fmt.Sprintf("%s-%s-%s", r.spec.Name, role, shortID(r.d.ID)),
		Image:      r.spec.Backup.Image,
		Service:    r.spec.Name,
		Deployment: r.d.ID,
		Command:    cmd,
		Env:        env,
		Network:    r.spec.Network,
		Limits:     limits,
		Mounts:     []VolumeMount{{Volume: r.spec.Backup.Volume, Target: BackupDir}},
	}
}

// pruneBackups keeps the service's newest Keep backups and says how many
// there are.
func (r *deployRun) pruneBackups(ctx context.Context) (int, error) {
	keep := r.spec.Backup.Keep
	spec := r.backupOneOff("backupprune",
		[]string{"sh", "-c", pruneScript, "prune", BackupDir, r.spec.Name, strconv.Itoa(keep)},
		[]string{"LC_ALL=C"})
	res, err := r.rt.RunOneOff(ctx, spec)
	if err != nil {
		return 0, err
	}
	if res.ExitCode != 0 {
		return 0, fmt.Errorf("prune exited with code %d: %s", res.ExitCode, lastLine(res.Output))
	}
	var kept int
	if _, err := fmt.Sscanf(lastLine(res.Output), "kept %d", &kept); err != nil {
		return 0, fmt.Errorf("prune said %q, want \"kept N\"", lastLine(res.Output))
	}
	return kept, nil
}

// removeFailedBackup removes what a failed backup left at file, so that a
// partial dump never counts among the kept ones. It is best effort (it
// needs rm in the image) and runs detached: ctx may have ended with the
// step's timeout.
func (r *deployRun) removeFailedBackup(ctx context.Context, file string) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	res, err := r.rt.RunOneOff(rctx, r.backupOneOff("backupclean", []string{"rm", "-f", "--", file}, nil))
	if err == nil && res.ExitCode != 0 {
		err = fmt.Errorf("rm exited with code %d", res.ExitCode)
	}
	if err != nil {
		r.log.WithError(err).WithField("file", file).Warn("remove failed backup")
	}
}

// backupFileName is the name of a deployment's backup file in the volume.
func backupFileName(service, deployment string) string {
	return service + "-" + deployment + ".dump"
}

func lastLine(s string) string {
	lines := OutputLines(s)
	if len(lines) == 0 {
		return ""
	}
	return lines[len(lines)-1]
}

// formatBytes writes n in binary units with one decimal: 512 B, 2.4 MiB.
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
