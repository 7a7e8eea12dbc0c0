package jobtemplate

import (
	"errors"
	"net/http"
)

// TransientError is a template read that may succeed later: the location
// answered "busy" (HTTP 408, 425, 429 or 5xx, S3 SlowDown and its kin) or
// could not be reached at all (DNS, refused connections, timeouts). A run
// whose template read failed so is worth another try; not found, access
// denied, too large or outside the fence are final.
type TransientError struct{ msg string }

func (e *TransientError) Error() string { return e.msg }

// IsTransient tells whether err, or an error it wraps, is a TransientError.
func IsTransient(err error) bool {
	var t *TransientError
	return errors.As(err, &t)
}

// busyStatus tells the HTTP statuses that say "try again later".
func busyStatus(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooEarly ||
		code == http.StatusTooManyRequests || code >= 500
}

// busyS3Codes are the S3 error codes that say "try again later" (the codes
// the AWS SDK's own retryer treats as throttling or transient).
var busyS3Codes = map[string]bool{
	"SlowDown": true, "ServiceUnavailable": true, "InternalError": true, "RequestTimeout": true,
	"RequestTimeoutException": true, "Throttling": true, "ThrottlingException": true,
	"ThrottledException": true, "RequestThrottled": true, "RequestThrottledException": true,
	"TooManyRequestsException": true, "RequestLimitExceeded": true, "BandwidthLimitExceeded": true,
	"ProvisionedThroughputExceededException": true, "TransactionInProgressException": true,
	"PriorRequestNotComplete": true, "EC2ThrottledException": true,
}

// busy marks a shown cause as transient.
type busy struct{ *shownError }

func (b busy) Unwrap() error { return b.shownError }

func shownBusy(format string, args ...any) error { return busy{shown(format, args...).(*shownError)} }
