package outbox

import (
	"time"
)

// The ballast is a file of Options.Ballast bytes kept in the outbox
// directory. When the disk fills up (free space under the floor, or Pebble
// meets ENOSPC) it is deleted, so that acknowledgements, deletes and
// compactions, which need a little space to free a lot, still work. It comes
// back once the disk has room again.

func (o *Outbox) ballastPath() string { return o.opts.FS.PathJoin(o.dir, "ballast") }

// diskFree returns the free bytes, or ok=false when unknown.
func (o *Outbox) diskFree() (uint64, bool) {
	if o.opts.DiskFree != nil {
		n, err := o.opts.DiskFree()
		return n, err == nil
	}
	u, err := o.opts.FS.GetDiskUsage(o.dir)
	if err != nil {
		return 0, false
	}
	return u.AvailBytes, true
}

// checkDisk updates the low-disk flag and manages the ballast. It runs at
// open and on the committer's ticker.
func (o *Outbox) checkDisk(initial bool) {
	if o.opts.MinFreeDisk < 0 && o.opts.Ballast < 0 {
		return
	}
	free, ok := o.diskFree()
	if !ok {
		o.diskLow.Store(false)
		return
	}
	floor := uint64(max(o.opts.MinFreeDisk, 0))
	low := o.opts.MinFreeDisk >= 0 && free < floor
	if low != o.diskLow.Load() {
		if low {
			o.log().Warn("outbox: free disk space below the floor; appends are refused until space returns",
				"free_bytes", free, "floor_bytes", floor)
		} else if !initial {
			o.log().Info("outbox: free disk space back above the floor", "free_bytes", free)
		}
		o.diskLow.Store(low)
		if !low {
			o.mu.Lock()
			close(o.spaceFreed)
			o.spaceFreed = make(chan struct{})
			o.refusing.Store(false)
			o.mu.Unlock()
		}
	}
	if o.opts.Ballast <= 0 {
		return
	}
	exists := o.ballastExists()
	switch {
	case low && exists:
		o.releaseBallast()
	case !low && !exists && free > floor+3*uint64(o.opts.Ballast):
		o.createBallast()
	}
}

func (o *Outbox) ballastExists() bool {
	st, err := o.opts.FS.Stat(o.ballastPath())
	return err == nil && st.Size() >= o.opts.Ballast
}

func (o *Outbox) releaseBallast() {
	if err := o.opts.FS.Remove(o.ballastPath()); err == nil {
		o.log().Warn("outbox: released the disk ballast", "bytes", o.opts.Ballast)
	}
	o.ballastOn.Store(false)
}

// onDiskFull is called by Pebble's filesystem wrapper on ENOSPC, with writes
// blocked; the write is retried once after it returns.
func (o *Outbox) onDiskFull() {
	o.diskLow.Store(true)
	o.releaseBallast()
}

func (o *Outbox) createBallast() {
	fs := o.opts.FS
	tmp := o.ballastPath() + ".tmp"
	f, err := fs.Create(tmp)
	if err != nil {
		return
	}
	buf := make([]byte, 64<<10)
	var written int64
	for written < o.opts.Ballast {
		n := min(int64(len(buf)), o.opts.Ballast-written)
		if _, err = f.Write(buf[:n]); err != nil {
			break
		}
		written += n
	}
	if err == nil {
		err = f.Sync()
	}
	_ = f.Close()
	if err != nil {
		_ = fs.Remove(tmp)
		return
	}
	if err := fs.Rename(tmp, o.ballastPath()); err != nil {
		_ = fs.Remove(tmp)
		return
	}
	o.ballastOn.Store(true)
}

var _ = time.Second
