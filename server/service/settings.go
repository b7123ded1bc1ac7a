package service

import (
	"time"

	"github.com/esign-evidence/esign-evidence/internal/setting"
)

// Settings are the handlers' own settings (uploads).
type Settings struct {
	// MaxFileBytes caps one uploaded file.
	MaxFileBytes int64
	// UploadIdleTimeout ends an upload that sends nothing for this long.
	UploadIdleTimeout time.Duration
}

// DefaultSettings are the settings unless configured otherwise.
func DefaultSettings() Settings {
	return Settings{MaxFileBytes: DefaultMaxFileBytes, UploadIdleTimeout: DefaultUploadIdleTimeout}
}

// Bind declares the settings on set, with their current values as defaults.
func (s *Settings) Bind(set *setting.Set) {
	setting.Bytes(set, &s.MaxFileBytes, "max-file-bytes", 1024, 1<<30, "largest file UploadFile accepts")
	set.Duration(&s.UploadIdleTimeout, "upload-idle-timeout", "an upload that sends nothing for this long is ended and its temporary file removed")
}
