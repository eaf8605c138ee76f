package main

import (
	"context"
	"errors"

	"github.com/parley-chat/parley/infra/config"
)

func replay(ctx context.Context, cfg config.Config, args []string) error {
	return errors.New("replay is not built yet (issue 4)")
}
