package elastic

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/opensearch-project/opensearch-go/v4/signer"
	"github.com/opensearch-project/opensearch-go/v4/signer/awsv2"
)

// The AWS services an OpenSearch cluster is signed for.
const (
	// AWSServiceManaged is Amazon OpenSearch Service's managed domains.
	AWSServiceManaged = "es"
	// AWSServiceServerless is Amazon OpenSearch Serverless's collections.
	AWSServiceServerless = "aoss"
)

// AWSSigner returns a signer for opensearch.Config.Signer that signs each
// request with AWS Signature Version 4 for service (AWSServiceManaged,
// "es", or AWSServiceServerless, "aoss") in region, as Amazon OpenSearch
// Service requires of a domain whose access policy names IAM principals.
// The credentials come from the AWS SDK's default chain (the
// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY environment, the shared
// config and credentials files, web identity, ECS and EC2 roles), fetched
// and refreshed when a request is signed.
func AWSSigner(ctx context.Context, region, service string) (signer.Signer, error) {
	if region == "" {
		return nil, fmt.Errorf("elastic: AWSSigner needs a region")
	}
	if service != AWSServiceManaged && service != AWSServiceServerless {
		return nil, fmt.Errorf("elastic: AWS service %q: es (managed domains) or aoss (Serverless)", service)
	}
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(region))
	if err != nil {
		return nil, fmt.Errorf("elastic: AWS config: %w", err)
	}
	s, err := awsv2.NewSignerWithService(cfg, service)
	if err != nil {
		return nil, fmt.Errorf("elastic: AWS signer: %w", err)
	}
	return s, nil
}
