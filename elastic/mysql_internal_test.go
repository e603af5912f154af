package elastic

import (
	"fmt"
	"testing"

	"github.com/go-sql-driver/mysql"
)

// TestMySQLDataException: a MySQL error of SQLSTATE class 22 is a data
// exception, which the handler isolates by halving the batch; others are
// not.
func TestMySQLDataException(t *testing.T) {
	bad := &mysql.MySQLError{Number: 1292, SQLState: [5]byte{'2', '2', '0', '0', '7'}, Message: "Incorrect datetime value"}
	if dataException(fmt.Errorf("elastic: load rows: %w", bad)) != bad {
		t.Error("SQLSTATE 22007 is not taken for a data exception")
	}
	other := &mysql.MySQLError{Number: 1146, SQLState: [5]byte{'4', '2', 'S', '0', '2'}, Message: "Table doesn't exist"}
	if dataException(fmt.Errorf("elastic: load rows: %w", other)) != nil {
		t.Error("SQLSTATE 42S02 is taken for a data exception")
	}
}
