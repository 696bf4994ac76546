package device

// WithLock runs fn under the device lock, as a change of the device's state
// must run: it refuses a simulated system that hung (CheckNotHung), takes
// the lock (Lock), runs fn and releases the lock.
func (d *Device) WithLock(fn func() error) error {
	if err := d.CheckNotHung(); err != nil {
		return err
	}
	unlock, err := d.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	return fn()
}
