package jobtemplate

import (
	"context"
	"errors"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// s3Reader reads s3:// objects with the AWS SDK's S3 client and the
// credentials the SDK finds (environment, shared files, IRSA, instance role).
type s3Reader struct{ client *s3.Client }

func (l *Loader) s3Reader(ctx context.Context) (*s3Reader, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.s3 != nil {
		return l.s3, nil
	}
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, err
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	endpoint := l.opts.S3Endpoint
	l.s3 = &s3Reader{client: s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.DisableLogOutputChecksumValidationSkipped = true
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
			o.UsePathStyle = true
		}
	})}
	return l.s3, nil
}

// read gets one object; s3://bucket/key?region=eu-west-1 names the bucket's
// region when the SDK's default is another.
func (s *s3Reader) read(ctx context.Context, loc location) ([]byte, error) {
	var opts []func(*s3.Options)
	if region := loc.url.Query().Get("region"); region != "" {
		opts = append(opts, func(o *s3.Options) { o.Region = region })
	}
	input := &s3.GetObjectInput{Bucket: aws.String(loc.host), Key: aws.String(loc.path)}
	out, err := s.client.GetObject(ctx, input, opts...)
	if region := bucketRegion(err); region != "" {
		// The bucket lives in another region than the SDK's default: ask there,
		// as boto3 did for the original agent.
		out, err = s.client.GetObject(ctx, input, append(opts, func(o *s3.Options) { o.Region = region })...)
	}
	if err != nil {
		var apiErr smithy.APIError
		if errors.As(err, &apiErr) {
			switch apiErr.ErrorCode() {
			case "NoSuchKey", "NotFound", "NoSuchBucket":
				return nil, shown("doesn't exist")
			case "AccessDenied", "Forbidden":
				return nil, shown("cannot be read with the agent's AWS credentials (access denied)")
			}
			if busyS3Codes[apiErr.ErrorCode()] {
				return nil, shownBusy("cannot be read (S3 error %s)", apiErr.ErrorCode())
			}
			return nil, shown("cannot be read (S3 error %s)", apiErr.ErrorCode())
		}
		return nil, err
	}
	defer out.Body.Close()
	if out.ContentLength != nil && *out.ContentLength > MaxSize {
		return nil, shown("is larger than %d bytes (1 MiB), the most the agent reads", MaxSize)
	}
	return readCapped(out.Body)
}

// bucketRegion is the region S3 names when it refuses a request sent to the
// wrong one (a 301 or 400 with the x-amz-bucket-region header), else "".
func bucketRegion(err error) string {
	var re *awshttp.ResponseError
	if err == nil || !errors.As(err, &re) || re.Response == nil {
		return ""
	}
	return re.Response.Header.Get("X-Amz-Bucket-Region")
}
